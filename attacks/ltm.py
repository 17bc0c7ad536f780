"""LTM (learning-to-misrank), Wang et al., "Transferable, Controllable, and Inconspicuous
Adversarial Attacks on Person Re-identification With Deep Mis-Ranking", CVPR 2020."""

from __future__ import annotations

import torch

from attacks import ATTACKS
from attacks.base import MASKED, Attack, Batch, CandidateSet, label_hit, mask_columns


@ATTACKS.register("LTM")
class LearningToMisrank(Attack):
    """LTM (Wang et al., CVPR 2020): rank every other-class candidate above every same-class one.

    PGD minimises Σ_i [max_{x: y_x ≠ y_i} d(q_i,x) − min_{x: y_x = y_i, x ≠ q_i} d(q_i,x)]₊.
    The query's own clean copy is excluded from the same-class set (robrank keeps it, a no-op
    mask, reproduced by ``--attack_compat``). Reported ``r@1`` (fraction): whether the nearest
    candidate, own clean copy masked, shares the query's label.
    """

    def select(self, batch: Batch, cands: CandidateSet, generator: torch.Generator) -> dict:
        return {"same": batch.labels[:, None] == cands.gallery_labels[None, :]}

    def objective(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> torch.Tensor:
        distances = cands.distances(embeds, exact=False)
        same = targets["same"]
        positives = distances if self.compat else mask_columns(distances, batch.self_position)
        nearest_same = positives.masked_fill(~same, MASKED).min(dim=1).values
        farthest_other = distances.masked_fill(same, -MASKED).max(dim=1).values
        valid = same.any(dim=1) & (~same).any(dim=1)
        if not self.compat:  # a query whose only same-class candidate is itself has none
            own = torch.zeros_like(same)
            rows = (batch.self_position >= 0).nonzero().squeeze(1)
            own[rows, batch.self_position[rows]] = True
            valid &= (same & ~own).any(dim=1)
        return ((farthest_other - nearest_same).clamp(min=0) * valid).sum()

    def measure(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> dict[str, torch.Tensor]:
        distances = cands.distances(embeds)
        return {
            "r@1": label_hit(distances, batch.self_position, batch.labels, cands.gallery_labels)
        }
