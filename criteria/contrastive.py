"""Contrastive loss (reference ``criteria/contrastive.py``)."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from batch_mining.base import BatchMiner
from criteria import CRITERIA
from criteria.base import Criterion, zero_loss
from criteria.introspective import Introspection
from utilities.flag_types import nonnegative_float


@CRITERIA.register("contrastive")
class ContrastiveLoss(Criterion):
    """Contrastive loss (Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an
    Invariant Mapping", CVPR 2006) on the (a,p) and (a,n) pairs of the mined triplets T:

        L = mean_T [d(a,p) − m_pos]₊ + mean_T [m_neg − d(a,n)]₊,   d = sqrt(‖·‖² + 1e-8)

    (the 1e-8 keeps the gradient finite for duplicate samples, which SPC sampling with replacement
    produces).

    With ``--idml`` (an ``uncertainty`` B×E in the context) d is the introspective distance of
    :mod:`criteria.introspective` (pair form, IDML, Wang et al., TPAMI 2023):

        d_I = sqrt(d²·exp(−(‖û_a − û_b‖² + c)/(λ·d²)) + 1e-8),   d² = ‖a − b‖²

    (the miner still mines on the plain embeddings).
    """

    requires_batchminer = True
    introspective = True

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        self.pos_margin = opt.loss_contrastive_pos_margin
        self.neg_margin = opt.loss_contrastive_neg_margin
        self.introspection = Introspection.from_options(opt)

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
        d_ap, d_an = self.introspection.triplet_distances(embeds, mined, context.get("uncertainty"))
        pull = (d_ap - self.pos_margin).clamp_min(0).mean()
        push = (self.neg_margin - d_an).clamp_min(0).mean()
        return pull + push
