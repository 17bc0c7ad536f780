"""Contrastive loss (reference ``criteria/contrastive.py``)."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from batch_mining.base import BatchMiner
from criteria import CRITERIA
from criteria.base import Criterion, distances, zero_loss
from utilities.flag_types import nonnegative_float


@CRITERIA.register("contrastive")
class ContrastiveLoss(Criterion):
    """Contrastive loss (Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an
    Invariant Mapping", CVPR 2006) on the (a,p) and (a,n) pairs of the mined triplets T:

        L = mean_T [d(a,p) − m_pos]₊ + mean_T [m_neg − d(a,n)]₊,   d = sqrt(‖·‖² + 1e-8)

    (the 1e-8 keeps the gradient finite for duplicate samples, which SPC sampling with replacement
    produces).
    """

    requires_batchminer = True

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        self.pos_margin = opt.loss_contrastive_pos_margin
        self.neg_margin = opt.loss_contrastive_neg_margin

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_contrastive_pos_margin",
            type=nonnegative_float,
            default=0.0,
            help="positive pairs closer than this are not pulled further",
        )
        group.add_argument(
            "--loss_contrastive_neg_margin",
            type=nonnegative_float,
            default=1.0,
            help="negative pairs farther than this are not pushed further",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        mined = self.tuples(embeds, labels, context.get("mined"))
        if len(mined) == 0:
            return zero_loss(embeds)
        anchor = embeds[mined[:, 0]]
        d_ap = distances(anchor, embeds[mined[:, 1]])
        d_an = distances(anchor, embeds[mined[:, 2]])
        pull = (d_ap - self.pos_margin).clamp_min(0).mean()
        push = (self.neg_margin - d_an).clamp_min(0).mean()
        return pull + push
