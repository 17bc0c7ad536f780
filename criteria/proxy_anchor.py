"""Proxy-Anchor loss (official ``tjddus9597/Proxy-Anchor-CVPR2020``, ``code/losses.py``)."""

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
from utilities.flag_types import nonnegative_float, positive_float


@CRITERIA.register("proxy_anchor")
class ProxyAnchorLoss(Criterion):
    """Proxy-Anchor (Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020) with one
    proxy p per class, s(x, p) = cos(x, p), P⁺ the proxies with a positive in the batch and
    X_p⁺ / X_p⁻ the batch samples of / not of class p:

        L = 1/|P⁺| Σ_{p∈P⁺} log(1 + Σ_{x∈X_p⁺} exp(−α(s(x,p) − δ)))
          + 1/|P|  Σ_{p∈P}  log(1 + Σ_{x∈X_p⁻} exp( α(s(x,p) + δ)))

    Input: embeddings B×D, labels B in 0..C−1. Proxies are Kaiming-normal (fan_out) initialised,
    normalised only inside the cosine, and train at ``--lr`` × ``--loss_proxy_anchor_lrmulti``
    (100, the official recipe) with the network's weight decay ``--decay``: the official code
    overrides only the proxies' learning rate, so its optimizer's weight decay applies to them.

    With ``--idml`` (an ``uncertainty`` B×E in the context) s is the introspective similarity of
    :mod:`criteria.introspective` (IDML, Wang et al., TPAMI 2023), in both exponents:

        s_I(x,p) = 1 − (1 − cos(x,p))·exp(−(‖û‖² + c)/(λ·‖x̂ − p‖²)),  p the raw proxy
    """

    introspective = True

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        require_classes(opt, 1, "proxy_anchor")
        self.alpha = opt.loss_proxy_anchor_alpha
        self.delta = opt.loss_proxy_anchor_delta
        self.proxy_lr = opt.lr * opt.loss_proxy_anchor_lrmulti
        self.proxy_decay = opt.decay
        proxies = torch.empty(opt.n_classes, opt.embed_dim)
        nn.init.kaiming_normal_(proxies, mode="fan_out")
        self.proxies = nn.Parameter(proxies)
        self.introspection = Introspection.from_options(opt)

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_proxy_anchor_alpha",
            type=positive_float,
            default=32.0,
            help="scale α (official --alpha)",
        )
        group.add_argument(
            "--loss_proxy_anchor_delta",
            type=nonnegative_float,
            default=0.1,
            help="margin δ (official --mrg)",
        )
        group.add_argument(
            "--loss_proxy_anchor_lrmulti",
            type=positive_float,
            default=100.0,
            help="proxy learning rate = --lr × this (weight decay: --decay, as the official code)",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        labels = labels.to(embeds.device)
        uncertainty = context.get("uncertainty")
        if uncertainty is None:
            proxies = F.normalize(self.proxies, dim=1).to(embeds.dtype)
            cosines = F.normalize(embeds, dim=1) @ proxies.T
        else:
            cosines = self.introspection.proxy_similarities(embeds, self.proxies, uncertainty)
        is_positive = F.one_hot(labels, len(self.proxies)).bool()
        pos_exp = torch.exp(-self.alpha * (cosines - self.delta)).masked_fill(~is_positive, 0)
        neg_exp = torch.exp(self.alpha * (cosines + self.delta)).masked_fill(is_positive, 0)
        with_positives = is_positive.any(0)
        pos_term = torch.log1p(pos_exp.sum(0))[with_positives].sum() / with_positives.sum()
        neg_term = torch.log1p(neg_exp.sum(0)).sum() / len(self.proxies)
        return pos_term + neg_term

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [self.proxies], "lr": self.proxy_lr, "weight_decay": self.proxy_decay}]
