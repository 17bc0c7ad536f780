"""SoftTriple loss as in the paper (reference ``criteria/softtriplet.py``, its deviations fixed)."""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from batch_mining.base import BatchMiner
from criteria import CRITERIA
from criteria.base import Criterion
from criteria.proxy_utils import require_classes


@CRITERIA.register("softtriplet")
class SoftTripleLoss(Criterion):
    """SoftTriple (Qian et al., "SoftTriple Loss: Deep Metric Learning Without Triplet Sampling",
    ICCV 2019) with K unit-norm centres w_c^k per class:

        S_ic^k = x̂_iᵀ w_c^k,   q_ic^k = softmax_k(S_ic^k / γ),   s_ic = Σ_k q_ic^k S_ic^k
        L = mean_i CE(λ(s_i − δ·onehot(y_i)), y_i)
            + τ · Σ_c Σ_{k<k'} sqrt(2 + 1e-5 − 2 w_c^kᵀ w_c^k') / (C·K·(K−1))

    (τ = ``--loss_softtriplet_reg_weight``; the regulariser is 0 when K = 1.) The reference
    normalises the centre matrix along the wrong axis, takes the softmax over classes instead of a
    class's centres, multiplies by γ instead of dividing, and reads a non-existent flag for the
    centres' learning rate; here the centres train at ``--lr`` × ``--loss_softtriplet_lrmulti``.
    """

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        require_classes(opt, 2, "softtriplet")
        self.n_centroids = opt.loss_softtriplet_n_centroids
        self.delta = opt.loss_softtriplet_margin_delta
        self.gamma = opt.loss_softtriplet_gamma
        self.scale = opt.loss_softtriplet_lambda
        self.reg_weight = opt.loss_softtriplet_reg_weight
        self.centre_lr = opt.lr * opt.loss_softtriplet_lrmulti
        centres = torch.empty(opt.n_classes * self.n_centroids, opt.embed_dim)
        nn.init.kaiming_uniform_(centres, a=math.sqrt(5))
        self.centres = nn.Parameter(centres)

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_softtriplet_n_centroids", type=int, default=2, help="centres per class K"
        )
        group.add_argument(
            "--loss_softtriplet_margin_delta", type=float, default=0.01, help="margin δ"
        )
        group.add_argument(
            "--loss_softtriplet_gamma",
            type=float,
            default=0.1,
            help="γ: the centre assignment is softmax(S/γ)",
        )
        group.add_argument(
            "--loss_softtriplet_lambda", type=float, default=8.0, help="scale λ of the logits"
        )
        group.add_argument(
            "--loss_softtriplet_reg_weight",
            type=float,
            default=0.2,
            help="weight τ of the centre-merging regulariser",
        )
        group.add_argument(
            "--loss_softtriplet_lrmulti",
            type=float,
            default=1.0,
            help="centre learning rate = --lr × this (no weight decay)",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        labels = labels.to(embeds.device)
        centres = F.normalize(self.centres, dim=1).to(embeds.dtype)
        n_classes = len(centres) // self.n_centroids
        # Centre-major columns (k·C + c): the softmax over a class's K centres then runs over a
        # middle dimension, which PyTorch vectorises across classes (~10× faster than over a
        # trailing dimension of size K).
        by_centre = centres.view(n_classes, self.n_centroids, -1).transpose(0, 1)
        sims = F.normalize(embeds, dim=1) @ by_centre.reshape(len(centres), -1).T
        sims = sims.view(-1, self.n_centroids, n_classes)
        assignment = torch.softmax(sims / self.gamma, dim=1)
        class_sims = (assignment * sims).sum(1)
        margin = self.delta * F.one_hot(labels, n_classes).to(class_sims.dtype)
        loss = F.cross_entropy(self.scale * (class_sims - margin), labels)
        if self.reg_weight and self.n_centroids > 1:
            per_class = centres.view(n_classes, self.n_centroids, -1)
            gram = per_class @ per_class.transpose(1, 2)
            upper = torch.triu_indices(self.n_centroids, self.n_centroids, 1, device=gram.device)
            pair_sims = gram[:, upper[0], upper[1]]
            spread = (2.0 + 1e-5 - 2 * pair_sims).clamp_min(0).sqrt().sum()
            loss = loss + self.reg_weight * spread / (
                n_classes * self.n_centroids * (self.n_centroids - 1)
            )
        return loss

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [self.centres], "lr": self.centre_lr, "weight_decay": 0.0}]
