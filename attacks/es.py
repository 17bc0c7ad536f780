"""ES (embedding shift), Zhou et al., "Adversarial Ranking Attack and Defense", ECCV 2020;
robrank's ES:D / ES:R terms of the Empirical Robustness Score."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks import ATTACKS
from attacks.base import Attack, Batch, CandidateSet, label_hit, paired_distance

RECALL_DEPTHS = (1, 10, 100)
PAIRWISE_EPS = 1e-6  # torch.nn.functional.pairwise_distance's default


@ATTACKS.register("ES")
class EmbeddingShift(Attack):
    """ES (Zhou et al., ECCV 2020): push each query's embedding away from its clean one.

    PGD minimises −Σ_i d(f(x̃_i), f(x_i) + 1e-7·u_i) (the offset avoids the zero gradient at
    x̃ = x; u_i uniform in {−1,0,1}^D). ``--attack_compat robrank`` takes robrank's arithmetic:
    u_i all ones and d = ‖f(x̃) − (f(x) + 1e-7) + 1e-6‖ (``F.pairwise_distance`` adds its eps
    1e-6 to the difference, so the first step moves away along +1, not −1) for N and E.
    Reported ``embshift`` = mean_i d(f(x̃_i), f(x_i)) (ES:D, in [0,2] for metric N) from the
    final iterate (robrank: from the penultimate one, reproduced by ``--attack_compat``), and
    ``r@1``, ``r@10``, ``r@100`` in percent (ES:R): whether one of the k nearest candidates,
    the query's clean copy masked, shares its label.
    """

    def select(self, batch: Batch, cands: CandidateSet, generator: torch.Generator) -> dict:
        if self.compat:  # robrank's AdvRank.attack: f(x) + 1e-7 in every coordinate
            offset = torch.ones_like(batch.clean)
        else:  # a random direction, as robrank's embShift (and EST) draws it
            offset = torch.randint(-1, 2, batch.clean.shape, generator=generator).to(batch.clean)
        return {"origin": batch.clean + 1e-7 * offset}

    def objective(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> torch.Tensor:
        if self.compat and cands.metric != "C":  # robrank: F.pairwise_distance, eps inside
            return -F.pairwise_distance(embeds, targets["origin"], eps=PAIRWISE_EPS).sum()
        return -paired_distance(embeds, targets["origin"], cands.metric).sum()

    def measure(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> dict[str, torch.Tensor]:
        distances = cands.distances(embeds)
        summary = {"embshift": paired_distance(embeds, batch.clean, cands.metric).double()}
        for k in RECALL_DEPTHS:
            hit = label_hit(distances, batch.self_position, batch.labels, cands.gallery_labels, k)
            summary[f"r@{k}"] = 100.0 * hit
        return summary

    @property
    def wants_penultimate(self) -> bool:
        return self.compat

    def measure_adversarial(
        self,
        embeds: torch.Tensor,
        penultimate: torch.Tensor | None,
        batch: Batch,
        cands: CandidateSet,
        targets: dict,
    ) -> dict[str, torch.Tensor]:
        summary = self.measure(embeds, batch, cands, targets)
        if penultimate is not None:
            shift = paired_distance(penultimate, batch.clean, cands.metric)
            summary["embshift"] = shift.double()
        return summary
