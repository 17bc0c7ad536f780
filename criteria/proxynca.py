"""ProxyNCA (reference ``criteria/proxynca.py``)."""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from batch_mining.base import BatchMiner
from criteria import CRITERIA
from criteria.base import Criterion
from criteria.introspective import Introspection
from criteria.proxy_utils import require_classes
from utilities.flag_types import positive_float


@CRITERIA.register("proxynca")
class ProxyNCALoss(Criterion):
    """ProxyNCA (Movshovitz-Attias et al., "No Fuss Distance Metric Learning using Proxies",
    ICCV 2017) with one proxy p_c per training class and a fixed scale 3 on both sides:

        x̂ = 3·x/‖x‖,  p̂_c = 3·p_c/‖p_c‖,  d_ic = ‖x̂_i − p̂_c‖²
        L = mean_i [ d_{i,y_i} + logsumexp_{c≠y_i}(−d_ic) ]
          = mean_i −log( exp(−d_{i,y_i}) / Σ_{c≠y_i} exp(−d_ic) )

    Input: embeddings B×D, labels B in 0..C−1 (C = ``opt.n_classes``). Proxies are initialised
    N(0, 1)/8 and train at ``--lr`` × ``--loss_proxynca_lrmulti`` without weight decay.

    With ``--idml`` (an ``uncertainty`` B×E in the context): d_ic = 18·(1 − cos(x_i, p_c)) is a
    function of the cosine, so the introspective distance replaces the cosine by the proxy form
    of the introspective similarity (:mod:`criteria.introspective`, the one Proxy-Anchor uses):

        d_I,ic = 18·(1 − s_I,ic) = d_ic · exp(−(‖û_i‖² + c) / (λ·‖x_i/‖x_i‖ − p_c‖²))

    with p_c the raw proxy (not the scaled p̂_c), and L as above on d_I.
    """

    introspective = True

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        require_classes(opt, 2, "proxynca")
        self.proxies = nn.Parameter(torch.randn(opt.n_classes, opt.embed_dim) / 8)
        self.proxy_lr = opt.lr * opt.loss_proxynca_lrmulti
        self.introspection = Introspection.from_options(opt)

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_proxynca_lrmulti",
            type=positive_float,
            default=50.0,
            help="proxy learning rate = --lr × this (no weight decay)",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        labels = labels.to(embeds.device)
        uncertainty = context.get("uncertainty")
        if uncertainty is None:
            x = 3 * F.normalize(embeds, dim=1)
            p = 3 * F.normalize(self.proxies, dim=1).to(embeds.dtype)
            # −d_ic = 2 x̂_iᵀp̂_c − ‖p̂_c‖² − ‖x̂_i‖²; the last term is the same for every c of
            # row i, so it cancels between d_{i,y_i} and the log-sum-exp and is never computed.
            logits = 2 * x @ p.T - p.pow(2).sum(1)
        else:
            similarity = self.introspection.proxy_similarities(embeds, self.proxies, uncertainty)
            logits = -18 * (1 - similarity)  # −d_I
        positive = logits.gather(1, labels[:, None]).squeeze(1)
        own_class = F.one_hot(labels, len(self.proxies)).bool()
        negatives = torch.logsumexp(logits.masked_fill(own_class, float("-inf")), dim=1)
        return (negatives - positive).mean()

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [self.proxies], "lr": self.proxy_lr, "weight_decay": 0.0}]
