"""Generalised lifted-structure loss (reference ``criteria/lifted.py``)."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from batch_mining.base import BatchMiner, split_anchor_sets
from criteria import CRITERIA
from criteria.base import Criterion, zero_loss
from utilities.flag_types import nonnegative_float


def distance_rows(embeds: torch.Tensor, rows: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Euclidean distances sqrt(‖x_r − x_j‖² + eps) from the samples ``rows`` (R,) to the whole
    batch (R×B), from the Gram matrix (one matrix product; the eps keeps the gradient finite for
    duplicate samples)."""
    squared = embeds.pow(2).sum(1)
    dist2 = squared[rows, None] + squared[None, :] - 2 * embeds[rows] @ embeds.T
    return (dist2.clamp_min(0) + eps).sqrt()


@CRITERIA.register("lifted")
class LiftedLoss(Criterion):
    """Generalised lifted-structure loss (Hermans, Beyer & Leibe, "In Defense of the Triplet Loss
    for Person Re-Identification", 2017, after Oh Song et al., CVPR 2016) on mined anchors a with
    positive set P_a and negative set N_a, d = sqrt(‖·‖² + 1e-8):

        L_a = [ log Σ_{p ∈ P_a} exp d(a,p) + log Σ_{n ∈ N_a} exp(m − d(a,n)) ]₊
        L   = mean_a L_a + λ_l2 · mean_i ‖x_i‖

    (the ‖x‖ penalty over the whole batch, as in the reference). 0 when nothing is mined.
    """

    requires_batchminer = True
    miner_outputs = ("anchor_positive_negative_sets",)

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        self.margin = opt.loss_lifted_neg_margin
        self.l2_weight = opt.loss_lifted_l2

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_lifted_neg_margin",
            type=nonnegative_float,
            default=1.0,
            help="margin m of the negative term log Σ exp(m − d(a,n))",
        )
        group.add_argument(
            "--loss_lifted_l2",
            type=nonnegative_float,
            default=0.005,
            help="weight λ_l2 of the embedding-norm penalty λ_l2·mean ‖x‖",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        mined = self.tuples(embeds, labels, context.get("mined"))
        if len(mined) == 0:
            return zero_loss(embeds)
        anchors, positives, negatives = split_anchor_sets(mined)
        dist = distance_rows(embeds, anchors)
        pull = dist.masked_fill(~positives, float("-inf")).logsumexp(1)
        push = (self.margin - dist).masked_fill(~negatives, float("-inf")).logsumexp(1)
        loss = (pull + push).clamp_min(0).mean()
        return loss + self.l2_weight * embeds.norm(dim=1).mean()
