"""Signal-to-noise-ratio triplet loss (reference ``criteria/snr.py``)."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from batch_mining.base import BatchMiner
from criteria import CRITERIA
from criteria.base import Criterion, zero_loss
from utilities.flag_types import nonnegative_float


@CRITERIA.register("snr")
class SNRLoss(Criterion):
    """Signal-to-noise-ratio triplet loss (Yuan et al., "Signal-to-Noise Ratio: A Robust Distance
    Metric for Deep Metric Learning", CVPR 2019) on mined triplets T.

    The SNR distance of x to the anchor x_a is the variance of the noise x_a − x over the variance
    of the signal x_a, both taken over the D embedding dimensions:

        d_snr(a, x) = Var_j(x_{a,j} − x_j) / Var_j(x_{a,j})
        ℓ = Σ_T [d_snr(a,p) − d_snr(a,n) + m]₊ / #{non-zero terms}   (plain sum when none is)
        L = ℓ + λ · mean_T |Σ_j x_{a,j}|

    The regulariser pushes embeddings towards zero mean. As in the reference, λ is 0 with the
    ``distance`` miner (its published SNR (D) runs). The reference divides by the number of active
    triplets even when it is 0 (NaN); here nothing active gives 0.
    """

    requires_batchminer = True

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        self.margin = opt.loss_snr_margin
        with_distance_miner = getattr(miner, "registry_key", None) == "distance"
        self.reg_lambda = 0.0 if with_distance_miner else opt.loss_snr_reg_lambda

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_snr_margin", type=nonnegative_float, default=0.2, help="SNR triplet margin m"
        )
        group.add_argument(
            "--loss_snr_reg_lambda",
            type=nonnegative_float,
            default=0.005,
            help="weight λ of the zero-mean regulariser λ·mean|Σ_j x_aj| (0 with "
            "--batch_mining distance, as in the reference)",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        mined = self.tuples(embeds, labels, context.get("mined"))
        if len(mined) == 0:
            return zero_loss(embeds)
        anchor, positive, negative = embeds[mined[:, 0]], embeds[mined[:, 1]], embeds[mined[:, 2]]
        signal = anchor.var(1, correction=0)
        snr_ap = (anchor - positive).var(1, correction=0) / signal
        snr_an = (anchor - negative).var(1, correction=0) / signal
        hinge = (snr_ap - snr_an + self.margin).clamp_min(0)
        loss = hinge.sum() / (hinge > 0).sum().clamp_min(1)
        if self.reg_lambda:
            loss = loss + self.reg_lambda * anchor.sum(1).abs().mean()
        return loss
