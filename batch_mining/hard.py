"""Hardest-negative mining (robrank's ``spc2-hard``)."""

from __future__ import annotations

import torch

from batch_mining import MINERS
from batch_mining.base import BatchMiner, class_masks, pairwise_distances, random_choice, triplets


@MINERS.register("hard")
class HardMiner(BatchMiner):
    """The hardest negative of every anchor (Hermans, Beyer & Leibe, "In Defense of the Triplet
    Loss for Person Re-Identification", 2017, batch-hard negatives; robrank's ``spc2-hard``).

    For every anchor a with a positive and a negative: p uniform among a's class (p ≠ a), and

        n = argmin_{y_n ≠ y_a} d(a, n)

    Returns T×3 indices, one triplet per eligible anchor.
    """

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dist = pairwise_distances(embeds)
        positives, negatives = class_masks(labels)
        anchors = (positives.any(1) & negatives.any(1)).nonzero().squeeze(1)
        negative = dist[anchors].masked_fill(~negatives[anchors], float("inf")).argmin(1)
        positive = random_choice(positives[anchors])
        return triplets(anchors, positive, negative)
