"""Triplet loss (reference ``criteria/triplet.py``)."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from batch_mining.base import BatchMiner
from criteria import CRITERIA
from criteria.base import Criterion, zero_loss


@CRITERIA.register("triplet")
class TripletLoss(Criterion):
    """Triplet loss (Schroff et al., "FaceNet", CVPR 2015) on mined triplets T, with squared
    distances as in the reference:

        L = mean_{(a,p,n) ∈ T} [ ‖x_a − x_p‖² − ‖x_a − x_n‖² + m ]₊
    """

    requires_batchminer = True

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        self.margin = opt.loss_triplet_margin

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_triplet_margin",
            type=float,
            default=0.2,
            help="triplet margin m (also the semihard miner's window with --loss triplet)",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        mined = self.miner(embeds, labels.to(embeds.device))
        if len(mined) == 0:
            return zero_loss(embeds)
        anchor, positive, negative = embeds[mined[:, 0]], embeds[mined[:, 1]], embeds[mined[:, 2]]
        d_ap = (anchor - positive).pow(2).sum(1)
        d_an = (anchor - negative).pow(2).sum(1)
        return (d_ap - d_an + self.margin).clamp_min(0).mean()
