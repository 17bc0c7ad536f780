"""GTM (greedy top-1 misrank), robrank's attack of the Empirical Robustness Score (Zhou et al.,
"Enhancing Adversarial Robustness for Deep Metric Learning", CVPR 2022)."""

from __future__ import annotations

import torch

from attacks import ATTACKS
from attacks.base import (
    MASKED,
    Attack,
    Batch,
    CandidateSet,
    label_hit,
    mask_columns,
    paired_distance,
)


def gtm_target(batch: Batch, cands: CandidateSet, compat: bool) -> torch.Tensor:
    """(B,) candidate position of each query's target.

    Correct: the nearest candidate whose label differs from the query's. ``compat`` (robrank):
    the split uses the benign top-1's label, and the position of the nearest candidate *within*
    the unmatching subset is used as a position in the whole candidate set.
    """
    distances = mask_columns(cands.distances(batch.clean), batch.self_position)
    if compat:
        top1 = distances.argmin(dim=1)
        unmatching = cands.gallery_labels[None, :] != cands.gallery_labels[top1][:, None]
    else:
        unmatching = cands.gallery_labels[None, :] != batch.labels[:, None]
    nearest = distances.masked_fill(~unmatching, MASKED).argmin(dim=1)
    if not compat:
        return nearest
    subset_position = unmatching.long().cumsum(dim=1) - 1
    return subset_position.gather(1, nearest[:, None]).squeeze(1).clamp(min=0)


@ATTACKS.register("GTM")
class GreedyTop1Misrank(Attack):
    """GTM (robrank, CVPR 2022 ERS): pull the query onto its nearest wrong-class candidate e_u.

    e_u = argmin_{x: y_x ≠ y_q} d(q, x) on the clean ranking; PGD minimises mean_i d(q_i, e_u,i).
    robrank's selector (benign top-1 label, subset-relative index) is reproduced by
    ``--attack_compat``. Reported ``r@1`` (fraction): whether the nearest candidate, own clean
    copy masked, shares the query's label.
    """

    def select(self, batch: Batch, cands: CandidateSet, generator: torch.Generator) -> dict:
        return {"target": cands.gallery[gtm_target(batch, cands, self.compat)]}

    def objective(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> torch.Tensor:
        return paired_distance(embeds, targets["target"], cands.metric).mean()

    def measure(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> dict[str, torch.Tensor]:
        distances = cands.distances(embeds)
        return {
            "r@1": label_hit(distances, batch.self_position, batch.labels, cands.gallery_labels)
        }
