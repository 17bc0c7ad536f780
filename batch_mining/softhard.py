"""Soft-hard mining (reference ``batchminer/softhard.py``)."""

from __future__ import annotations

import torch

from batch_mining import MINERS
from batch_mining.base import (
    BatchMiner,
    class_masks,
    fallback,
    pairwise_distances,
    random_choice,
    triplets,
)


@MINERS.register("softhard")
class SofthardMiner(BatchMiner):
    """Random hard positive and hard negative per anchor (Roth et al., ICML 2020, "softhard").

    For every anchor with a positive and a negative:
    hard positives  P_h = {p : d(a,p) > min_n d(a,n)},
    hard negatives  N_h = {n : d(a,n) < max_p d(a,p)};
    p is drawn uniformly from P_h (all positives if P_h is empty), n likewise from N_h.
    Returns T×3 indices, one triplet per eligible anchor.
    """

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dist = pairwise_distances(embeds)
        positives, negatives = class_masks(labels)
        anchors = (positives.any(1) & negatives.any(1)).nonzero().squeeze(1)
        dist, positives, negatives = dist[anchors], positives[anchors], negatives[anchors]
        inf = torch.full_like(dist, float("inf"))
        closest_negative = torch.where(negatives, dist, inf).min(1, keepdim=True).values
        farthest_positive = torch.where(positives, dist, -inf).max(1, keepdim=True).values
        hard_positives = positives & (dist > closest_negative)
        hard_negatives = negatives & (dist < farthest_positive)
        positive = random_choice(fallback(hard_positives, positives))
        negative = random_choice(fallback(hard_negatives, negatives))
        return triplets(anchors, positive, negative)
