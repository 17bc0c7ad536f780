"""Margin loss with learnable class boundaries (reference ``criteria/margin.py``)."""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

from batch_mining.base import BatchMiner
from criteria import CRITERIA
from criteria.base import Criterion, zero_loss
from criteria.introspective import Introspection
from utilities.flag_types import nonnegative_float, positive_float


@CRITERIA.register("margin")
class MarginLoss(Criterion):
    """Margin loss (Wu et al., "Sampling Matters in Deep Embedding Learning", ICCV 2017) on mined
    triplets T, with d = sqrt(‖·‖² + 1e-8) and β_y a learnable boundary of the anchor's class
    (one fixed scalar with ``--loss_margin_beta_constant``):

        L = ( Σ_T ( [d(a,p) − β_{y_a} + α]₊ + [β_{y_a} − d(a,n) + α]₊ ) + ν · Σ_T β_{y_a} )
            / #{non-zero terms}      (divisor 1 when no term is non-zero)

    The β regulariser ν·β_{y_a} per triplet (learnable β only; a constant β has nothing to
    regularise) shares the loss's divisor, as in the authors'
    implementation (``(sum(pos_loss + neg_loss) + nu * sum(beta)) / pair_cnt``). (The reference
    crashes with a NameError when ν > 0; its intent, ν·Σ_T β added after the division, was never
    run, so no published number depends on it.)

    The reference's divisor is the number of triplets with at least one non-zero term (it adds two
    boolean tensors, a logical or); ``--loss_margin_reference_pair_count`` reproduces it.

    With ``--idml`` (an ``uncertainty`` B×E in the context) d is the introspective distance of
    :mod:`criteria.introspective` (pair form, IDML, Wang et al., TPAMI 2023):

        d_I = sqrt(d²·exp(−(‖û_a − û_b‖² + c)/(λ·d²)) + 1e-8),   d² = ‖a − b‖²

    (distance-weighted sampling still mines on the plain embeddings).
    """

    requires_batchminer = True
    introspective = True

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        self.margin = opt.loss_margin_margin
        self.nu = opt.loss_margin_nu
        self.beta_lr = opt.loss_margin_beta_lr
        self.reference_pair_count = opt.loss_margin_reference_pair_count
        self.introspection = Introspection.from_options(opt)
        self.beta: nn.Parameter | float
        if opt.loss_margin_beta_constant:
            self.beta = float(opt.loss_margin_beta)
        else:
            self.beta = nn.Parameter(torch.full((opt.n_classes,), float(opt.loss_margin_beta)))

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_margin_margin", type=nonnegative_float, default=0.2, help="margin α around β"
        )
        group.add_argument(
            "--loss_margin_beta_lr",
            type=positive_float,
            default=5e-4,
            help="learning rate of the per-class boundaries β (no weight decay)",
        )
        group.add_argument(
            "--loss_margin_beta", type=nonnegative_float, default=1.2, help="initial boundary β"
        )
        group.add_argument(
            "--loss_margin_nu",
            type=nonnegative_float,
            default=0.0,
            help="weight ν of the β regulariser ν·Σ_T β_{y_a} (divided like the loss)",
        )
        group.add_argument(
            "--loss_margin_beta_constant",
            action="store_true",
            help="keep one fixed β instead of learnable per-class boundaries",
        )
        group.add_argument(
            "--loss_margin_reference_pair_count",
            action="store_true",
            help="reproduce the reference: divide by the number of triplets with a non-zero term "
            "instead of the number of non-zero terms",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        labels = labels.to(embeds.device)
        mined = self.tuples(embeds, labels, context.get("mined"))
        if len(mined) == 0:
            return zero_loss(embeds)
        d_ap, d_an = self.introspection.triplet_distances(embeds, mined, context.get("uncertainty"))
        if isinstance(self.beta, nn.Parameter):
            beta = self.beta[labels[mined[:, 0]]]
        else:
            beta = torch.full_like(d_ap, self.beta)
        pull = (d_ap - beta + self.margin).clamp_min(0)
        push = (beta - d_an + self.margin).clamp_min(0)
        if self.reference_pair_count:
            active = ((pull > 0) | (push > 0)).sum()
        else:
            active = (pull > 0).sum() + (push > 0).sum()
        total = (pull + push).sum()
        if self.nu and isinstance(self.beta, nn.Parameter):  # a constant β has nothing to learn
            total = total + self.nu * beta.sum()
        return total / active.clamp_min(1)

    def param_groups(self) -> list[dict[str, Any]]:
        if not isinstance(self.beta, nn.Parameter):
            return []
        return [{"params": [self.beta], "lr": self.beta_lr, "weight_decay": 0.0}]
