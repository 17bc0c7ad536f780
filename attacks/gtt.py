"""GTT (greedy top-1 translocation), robrank's attack of the Empirical Robustness Score (Zhou
et al., "Enhancing Adversarial Robustness for Deep Metric Learning", CVPR 2022)."""

from __future__ import annotations

import torch

from attacks import ATTACKS
from attacks.base import Attack, Batch, CandidateSet, mask_columns
from attacks.qa import ranking_loss


@ATTACKS.register("GTT")
class GreedyTop1Translocation(Attack):
    """GTT (robrank, CVPR 2022 ERS): push the query's benign top-1 candidate c₁ out of the top.

    c₁ = the nearest candidate on the clean ranking (own clean copy masked); PGD minimises the
    QA− loss with M = 1, mean_x [d(q,x) − d(q,c₁)]₊. Reported (fractions) ``ID-Retain@1`` =
    1[c₁ is still the adversarial top-1] and ``retain@4`` = 1[c₁ is in the adversarial top-4],
    own clean copy masked.
    """

    def select(self, batch: Batch, cands: CandidateSet, generator: torch.Generator) -> dict:
        distances = mask_columns(cands.distances(batch.clean), batch.self_position)
        return {"top1": distances.argmin(dim=1, keepdim=True)}

    def objective(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> torch.Tensor:
        return ranking_loss(cands.distances(embeds, exact=False), targets["top1"], "-")

    def measure(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> dict[str, torch.Tensor]:
        distances = mask_columns(cands.distances(embeds), batch.self_position)
        top4 = distances.topk(min(4, distances.shape[1]), dim=1, largest=False).indices
        found = top4 == targets["top1"]
        return {
            "ID-Retain@1": found[:, 0].double(),
            "retain@4": found.any(dim=1).double(),
        }
