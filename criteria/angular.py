"""Angular loss (reference ``criteria/angular.py``)."""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch

from batch_mining.base import BatchMiner
from criteria import CRITERIA
from criteria.base import Criterion, zero_loss
from criteria.npair import npair_term, tuplet_loss, tuplets
from utilities.flag_types import Range, nonnegative_float


@CRITERIA.register("angular")
class AngularLoss(Criterion):
    """Angular loss combined with the N-pair loss (Wang et al., "Deep Metric Learning with Angular
    Loss", ICCV 2017) on mined (N+1)-tuplets (a, p, N_a). With x̂ = x/‖x‖ and t = tan α:

        f_apn   = 4t²·(x̂_a + x̂_p)ᵀx̂_n − 2(1 + t²)·x̂_aᵀx̂_p
        L_ang   = mean_{(a,p)} log(1 + Σ_{n ∈ N_a} exp f_apn)
        L_npair = mean_{(a,p)} log(1 + Σ_{n ∈ N_a} exp clamp(x_aᵀx_n − x_aᵀx_p, ±50))
        L       = L_npair + λ·L_ang + λ_l2 · mean_i ‖x_i‖

    Only the angular term is normalised; the N-pair term uses the raw embeddings with the
    reference's ±50 logit clamp. 0 when nothing is mined.
    """

    requires_batchminer = True
    miner_outputs = ("anchor_positive_negative_sets",)
    npair_logit_limit = 50.0

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        self.alpha = opt.loss_angular_alpha
        self.tan_squared = math.tan(math.radians(self.alpha)) ** 2
        self.angular_weight = opt.loss_angular_npair_ang_weight
        self.l2_weight = opt.loss_angular_npair_l2

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_angular_alpha",
            type=Range(float, 0, 90, open_low=True, open_high=True),
            default=45.0,
            help="angle bound α in degrees",
        )
        group.add_argument(
            "--loss_angular_npair_ang_weight",
            type=nonnegative_float,
            default=2.0,
            help="weight λ of the angular term against the N-pair term",
        )
        group.add_argument(
            "--loss_angular_npair_l2",
            type=nonnegative_float,
            default=0.005,
            help="weight λ_l2 of the embedding-norm penalty λ_l2·mean ‖x‖",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        mined = self.tuples(embeds, labels, context.get("mined"))
        if len(mined) == 0:
            return zero_loss(embeds)
        anchor, positive, negatives = tuplets(mined)
        gram = embeds @ embeds.T  # one product serves both terms
        norms = gram.diagonal().clamp_min(1e-24).sqrt()
        cosines = gram / (norms[:, None] * norms[None, :])
        npair = npair_term(gram[anchor], positive, negatives, self.npair_logit_limit)
        angular_logits = self.angular_logits(cosines, anchor, positive)
        angular = tuplet_loss(angular_logits, positive, negatives)
        loss = npair + self.angular_weight * angular
        return loss + self.l2_weight * norms.mean()

    def angular_logits(
        self, cosines: torch.Tensor, anchor: torch.Tensor, positive: torch.Tensor
    ) -> torch.Tensor:
        """K×B logits f_apn of the K tuplets (a_k, p_k) against every batch sample n, from the
        B×B cosine similarities x̂ᵢᵀx̂ⱼ."""
        towards = cosines[anchor] + cosines[positive]
        inner = cosines[anchor, positive][:, None]
        return 4 * self.tan_squared * towards - 2 * (1 + self.tan_squared) * inner
