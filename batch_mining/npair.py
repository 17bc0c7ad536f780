"""N-pair tuple mining (reference ``batchminer/npair.py``)."""

from __future__ import annotations

import argparse

import torch

from batch_mining import MINERS
from batch_mining.base import BatchMiner, anchor_sets, class_masks, random_choice


@MINERS.register("npair")
class NPairMiner(BatchMiner):
    """(N+1)-tuplets for the N-pair loss (Sohn, "Improved Deep Metric Learning with Multi-class
    N-pair Loss Objective", NeurIPS 2016).

    Default (the reference): every sample a with a same-class partner and an other-class sample is
    an anchor; its positive set is one same-class sample p ≠ a drawn uniformly, its negative set
    every sample of another class:  P_a = {p},  N_a = {j : y_j ≠ y_a}. With the paper's batches of
    N classes × 2 samples this is exactly "the other classes' positives" of the N-pair-mc loss.
    ``--miner_npair_one_pair_per_class`` builds the paper's N-pair-mc tuplets for any batch
    instead: per class with ≥ 2 samples one random pair (a, p), and N_a = the positives of the
    other classes' pairs. Returns the A×(1+B) ``anchor_positive_negative_sets`` tensor (see
    ``batch_mining.base``).
    """

    output = "anchor_positive_negative_sets"

    def __init__(self, opt: argparse.Namespace) -> None:
        super().__init__(opt)
        self.one_pair_per_class = opt.miner_npair_one_pair_per_class

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--miner_npair_one_pair_per_class",
            action="store_true",
            help="the paper's N-pair-mc tuplets: one random (anchor, positive) pair per class, "
            "negatives = the other pairs' positives (default, as the reference: every sample is "
            "an anchor, negatives = every other-class sample)",
        )

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.one_pair_per_class:
            return self.one_pair_per_class_tuplets(labels)
        positives, negatives = class_masks(labels)
        anchors = (positives.any(1) & negatives.any(1)).nonzero().squeeze(1)
        positives, negatives = positives[anchors], negatives[anchors]
        positive = random_choice(positives)
        chosen = torch.zeros_like(positives).scatter_(1, positive[:, None], True)
        return anchor_sets(anchors, chosen, negatives)

    @staticmethod
    def one_pair_per_class_tuplets(labels: torch.Tensor) -> torch.Tensor:
        """Per class, the two members with the highest random scores are its anchor and
        positive; each anchor's negatives are the positives of the other classes' pairs."""
        batch_size = len(labels)
        same = labels[:, None] == labels[None, :]
        scores = torch.rand(batch_size, device=labels.device)
        class_scores = torch.where(same, scores[None, :], -1.0)  # row i: i's class members
        top = class_scores.topk(min(2, batch_size), dim=1)
        index = torch.arange(batch_size, device=labels.device)
        is_anchor = (top.indices[:, 0] == index) & (top.values[:, -1] >= 0) & (batch_size > 1)
        anchors = is_anchor.nonzero().squeeze(1)
        positive = top.indices[anchors, -1]
        pair_positives = torch.zeros_like(is_anchor).index_fill_(0, positive, True)
        negatives = pair_positives[None, :] & ~same[anchors]
        keep = negatives.any(1)
        anchors, positive, negatives = anchors[keep], positive[keep], negatives[keep]
        chosen = torch.zeros_like(negatives).scatter_(1, positive[:, None], True)
        return anchor_sets(anchors, chosen, negatives)
