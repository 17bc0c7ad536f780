"""N-pair tuple mining (reference ``batchminer/npair.py``)."""

from __future__ import annotations

import argparse

import torch

from batch_mining import MINERS
from batch_mining.base import (
    NEGATIVE,
    POSITIVE,
    BatchMiner,
    class_masks,
    random_choice,
)


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
        if len(anchors) < len(labels):  # (with SPC ≥ 2 batches every sample is an anchor)
            positives, negatives = positives[anchors], negatives[anchors]
        positive = random_choice(positives)
        roles = torch.where(negatives, NEGATIVE, 0).scatter_(1, positive[:, None], POSITIVE)
        return torch.cat([anchors[:, None], roles], dim=1)

    @staticmethod
    def one_pair_per_class_tuplets(labels: torch.Tensor) -> torch.Tensor:
        """Per class with ≥ 2 samples, a uniformly random ordered pair (a, p) of distinct
        members; each anchor's negatives are the positives of the other classes' pairs. Classes
        become contiguous runs of their members in random order (a random permutation, then a
        stable sort by label); a run's first member is its anchor and its second the positive."""
        batch_size, device = len(labels), labels.device
        shuffled = torch.randperm(batch_size, device=device)
        order = shuffled[torch.argsort(labels[shuffled], stable=True)]
        grouped = labels[order]
        starts_run = torch.ones(batch_size, dtype=torch.bool, device=device)
        starts_run[1:] = grouped[1:] != grouped[:-1]
        first_of_pair = (starts_run[:-1] & ~starts_run[1:]).nonzero().squeeze(1)
        if len(first_of_pair) < 2:  # fewer than two pairs: no anchor has a negative
            return torch.zeros(0, 1 + batch_size, dtype=torch.long, device=device)
        anchors, positive = order[first_of_pair], order[first_of_pair + 1]
        pair_positives = torch.zeros(batch_size, dtype=torch.bool, device=device)
        pair_positives[positive] = True
        negatives = pair_positives[None, :] & (labels[anchors, None] != labels[None, :])
        roles = torch.where(negatives, NEGATIVE, 0).scatter_(1, positive[:, None], POSITIVE)
        return torch.cat([anchors[:, None], roles], dim=1)
