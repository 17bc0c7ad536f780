"""Triplet loss (reference ``criteria/triplet.py``; robrank's ``ptriplet{E,N,C}``)."""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F

from batch_mining.base import BatchMiner
from criteria import CRITERIA
from criteria.base import Criterion, distances, zero_loss
from criteria.introspective import Introspection
from utilities.flag_types import nonnegative_float

DISTANCES = ("squared", "euclidean", "cosine")


@CRITERIA.register("triplet")
class TripletLoss(Criterion):
    """Triplet loss (Schroff et al., "FaceNet", CVPR 2015) on mined triplets T:

        L = mean_{(a,p,n) ∈ T} [ d(x_a, x_p) − d(x_a, x_n) + m ]₊

    with d chosen by ``--loss_triplet_distance``:

    - ``squared`` (default, the Revisiting-DML reference): d = ‖x − y‖²;
    - ``euclidean`` (robrank's ``ptripletE``/``ptripletN``, PyTorch's ``triplet_margin_loss``):
      d = sqrt(‖x − y‖² + 1e-8);
    - ``cosine`` (robrank's ``ptripletC``): d = 1 − cos(x, y).

    With ``--idml`` (an ``uncertainty`` B×E in the context) each d is the introspective one of
    :mod:`criteria.introspective` (pair form, IDML, Wang et al., TPAMI 2023), with
    d_u = ‖û_x − û_y‖² and K = d_u + c:

    - ``squared``: d_I = d²·exp(−K/(λ·d²)) (the introspective squared distance), d² = ‖x − y‖²;
    - ``euclidean``: d_I = sqrt(d²·exp(−K/(λ·d²)) + 1e-8);
    - ``cosine``: d_I = 1 − s_I = (1 − s)·exp(−K/(λ·d_s)),  d_s = ‖x̂ − ŷ‖² = 2(1 − s).

    The miner (semihard's window included) still mines on the plain embeddings.
    """

    requires_batchminer = True
    introspective = True

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        self.margin = opt.loss_triplet_margin
        self.distance = opt.loss_triplet_distance
        self.introspection = Introspection.from_options(opt)

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_triplet_margin",
            type=nonnegative_float,
            default=0.2,
            help="triplet margin m (also the semihard miner's window with --loss triplet)",
        )
        group.add_argument(
            "--loss_triplet_distance",
            choices=DISTANCES,
            default="squared",
            help="d of the triplet loss: squared Euclidean (the Revisiting-DML reference), "
            "euclidean (robrank's ptripletN/E) or cosine (1 − cos, robrank's ptripletC)",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        mined = self.tuples(embeds, labels, context.get("mined"))
        if len(mined) == 0:
            return zero_loss(embeds)
        anchor, positive, negative = embeds[mined[:, 0]], embeds[mined[:, 1]], embeds[mined[:, 2]]
        uncertainty = context.get("uncertainty")
        if uncertainty is None:
            d_ap = self.pair_distance(anchor, positive)
            d_an = self.pair_distance(anchor, negative)
        else:
            u_a, u_p, u_n = (uncertainty[index] for index in mined.T)
            d_ap = self.introspective_distance(anchor, positive, u_a, u_p)
            d_an = self.introspective_distance(anchor, negative, u_a, u_n)
        return (d_ap - d_an + self.margin).clamp_min(0).mean()

    def pair_distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Row-wise d(x_i, y_i) of ``--loss_triplet_distance``."""
        if self.distance == "squared":
            return (x - y).pow(2).sum(1)
        if self.distance == "euclidean":
            return distances(x, y)
        return 1.0 - F.cosine_similarity(x, y, dim=1)

    def introspective_distance(
        self, x: torch.Tensor, y: torch.Tensor, u_x: torch.Tensor, u_y: torch.Tensor
    ) -> torch.Tensor:
        """Row-wise introspective d_I(x_i, y_i) of ``--loss_triplet_distance`` (uncertainties
        ``u_x``, ``u_y``)."""
        ism = self.introspection
        if self.distance == "euclidean":
            return ism.pair_distances(x, y, u_x, u_y)
        if self.distance == "squared":
            return ism.pair_squared_distances((x - y).pow(2).sum(1), u_x, u_y)
        unit = (F.normalize(x, dim=1) - F.normalize(y, dim=1)).pow(2).sum(1)
        return ism.pair_squared_distances(unit, u_x, u_y) / 2
