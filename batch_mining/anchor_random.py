"""One random triplet per anchor (robrank's ``spc2-random``)."""

from __future__ import annotations

import torch

from batch_mining import MINERS
from batch_mining.base import BatchMiner, class_masks, random_choice, triplets


@MINERS.register("anchor_random")
class AnchorRandomMiner(BatchMiner):
    """A random triplet for every anchor (Zhou et al., "Adversarial Ranking Attack and Defense",
    ECCV 2020; robrank's ``spc2-random``, the miner of its ``ptriplet`` losses).

    For every anchor a with a positive and a negative in the batch: p uniform among the samples of
    a's class (p ≠ a), n uniform among the samples of other classes. Unlike ``random`` (B
    triplets drawn from all valid ones, so anchors repeat or go unused), every anchor gets exactly
    one triplet, as the source triplets of robrank's defenses do. Returns T×3 indices, one triplet
    per eligible anchor.
    """

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        positives, negatives = class_masks(labels)
        anchors = (positives.any(1) & negatives.any(1)).nonzero().squeeze(1)
        positive = random_choice(positives[anchors])
        negative = random_choice(negatives[anchors])
        return triplets(anchors, positive, negative)
