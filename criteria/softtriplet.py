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
from utilities.flag_types import nonnegative_float, positive_float, positive_int


@CRITERIA.register("softtriplet")
class SoftTripleLoss(Criterion):
    """SoftTriple (Qian et al., "SoftTriple Loss: Deep Metric Learning Without Triplet Sampling",
    ICCV 2019) with K unit-norm centres w_c^k per class:

        S_ic^k = x̂_iᵀ w_c^k,   q_ic^k = softmax_k(S_ic^k / γ),   s_ic = Σ_k q_ic^k S_ic^k
        L = mean_i CE(λ(s_i − δ·onehot(y_i)), y_i)
            + τ · Σ_c Σ_{k<k'} sqrt(2 + 1e-5 − 2 w_c^kᵀ w_c^k') / (C·K·(K−1))

    (τ = ``--loss_softtriplet_reg_weight``; the regulariser is 0 when K = 1.) Centres are
    initialised uniformly in ±1/√(C·K), as the official code and the reference, and train at
    ``--lr`` × ``--loss_softtriplet_lrmulti`` without weight decay (the reference reads a
    non-existent flag for that rate and crashes).

    The reference (behind its published SoftTriple numbers) deviates from the paper: it normalises
    the D×(C·K) centre matrix along the wrong axis (each embedding dimension across all centres,
    not each centre), takes the softmax over the classes (for each k) instead of over a class's
    centres, and multiplies by γ instead of dividing. ``--loss_softtriplet_reference_math``
    reproduces that:  W̃_dj = W_dj / ‖W_d,:‖ (row d of D×(C·K)),  q_ic^k = softmax_c(γ·S_ic^k)
    (embeddings are L2-normalised either way; the reference assumes a ``_normalize`` ``--arch``).
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
        self.reference_math = opt.loss_softtriplet_reference_math
        n_centres = opt.n_classes * self.n_centroids
        bound = 1 / math.sqrt(n_centres)
        self.centres = nn.Parameter(torch.empty(n_centres, opt.embed_dim).uniform_(-bound, bound))

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_softtriplet_n_centroids",
            type=positive_int,
            default=2,
            help="centres per class K",
        )
        group.add_argument(
            "--loss_softtriplet_margin_delta", type=nonnegative_float, default=0.01, help="margin δ"
        )
        group.add_argument(
            "--loss_softtriplet_gamma",
            type=positive_float,
            default=0.1,
            help="γ: the centre assignment is softmax(S/γ)",
        )
        group.add_argument(
            "--loss_softtriplet_lambda",
            type=positive_float,
            default=8.0,
            help="scale λ of the logits",
        )
        group.add_argument(
            "--loss_softtriplet_reg_weight",
            type=nonnegative_float,
            default=0.2,
            help="weight τ of the centre-merging regulariser",
        )
        group.add_argument(
            "--loss_softtriplet_lrmulti",
            type=positive_float,
            default=1.0,
            help="centre learning rate = --lr × this (no weight decay)",
        )
        group.add_argument(
            "--loss_softtriplet_reference_math",
            action="store_true",
            help="reproduce the reference's formulation behind its published numbers: centre "
            "matrix normalised along the embedding axis, softmax over classes, γ·S instead of S/γ",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        labels = labels.to(embeds.device)
        n_classes = len(self.centres) // self.n_centroids
        if self.reference_math:
            centres = F.normalize(self.centres, dim=0).to(embeds.dtype)
            sims = (F.normalize(embeds, dim=1) @ centres.T).view(-1, n_classes, self.n_centroids)
            assignment = torch.softmax(self.gamma * sims, dim=1)  # over the classes
            class_sims = (assignment * sims).sum(2)
        else:
            centres = F.normalize(self.centres, dim=1).to(embeds.dtype)
            # Centre-major columns (k·C + c): the softmax over a class's K centres then runs over
            # a middle dimension, which PyTorch vectorises across classes (~10× faster than over a
            # trailing dimension of size K).
            by_centre = centres.view(n_classes, self.n_centroids, -1).transpose(0, 1)
            sims = F.normalize(embeds, dim=1) @ by_centre.reshape(len(centres), -1).T
            sims = sims.view(-1, self.n_centroids, n_classes)
            assignment = torch.softmax(sims / self.gamma, dim=1)  # over a class's centres
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
