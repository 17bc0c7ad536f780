"""Lifted-structure set mining (reference ``batchminer/lifted.py``)."""

from __future__ import annotations

import torch

from batch_mining import MINERS
from batch_mining.base import BatchMiner, anchor_sets, class_masks


@MINERS.register("lifted")
class LiftedMiner(BatchMiner):
    """Positive and negative sets for the generalised lifted-structure loss (Hermans, Beyer &
    Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017; after Oh Song et
    al., "Deep Metric Learning via Lifted Structured Feature Embedding", CVPR 2016).

    Every sample a with a same-class partner and an other-class sample is an anchor, with
        P_a = {p ≠ a : y_p = y_a},   N_a = {n : y_n ≠ y_a}.
    Deterministic. Returns the A×(1+B) ``anchor_positive_negative_sets`` tensor (see
    ``batch_mining.base``).
    """

    output = "anchor_positive_negative_sets"

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        positives, negatives = class_masks(labels)
        anchors = (positives.any(1) & negatives.any(1)).nonzero().squeeze(1)
        return anchor_sets(anchors, positives[anchors], negatives[anchors])
