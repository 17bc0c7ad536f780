"""TMA (targeted mismatch attack), Tolias et al., "Targeted Mismatch Adversarial Attack: Query
with a Flower to Retrieve the Tower", ICCV 2019."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks import ATTACKS
from attacks.base import Attack, Batch, CandidateSet, uniform_indices


@ATTACKS.register("TMA")
class TargetedMismatch(Attack):
    """TMA (Tolias et al., ICCV 2019): make the query's embedding look like a random candidate's.

    e_r uniform from the candidate set per query; PGD minimises mean_i (1 − cos(q_i, e_r,i)).
    Reported ``Cosine-SIM`` = mean_i cos(q_i, e_r,i) (benign ≈ the similarity of a random pair).
    """

    def select(self, batch: Batch, cands: CandidateSet, generator: torch.Generator) -> dict:
        n = cands.gallery.shape[0]
        chosen = uniform_indices((batch.clean.shape[0],), n, generator, batch.clean.device)
        return {"target": cands.gallery[chosen]}

    def objective(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> torch.Tensor:
        return (1.0 - F.cosine_similarity(embeds, targets["target"], dim=-1)).mean()

    def measure(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> dict[str, torch.Tensor]:
        similarity = F.cosine_similarity(embeds, targets["target"], dim=-1)
        return {"Cosine-SIM": similarity.double()}
