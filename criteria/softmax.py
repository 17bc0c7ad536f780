"""Normalised softmax (reference ``criteria/softmax.py``)."""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from batch_mining.base import BatchMiner
from criteria import CRITERIA
from criteria.base import Criterion
from criteria.proxy_utils import require_classes, uniform_class_matrix
from utilities.flag_types import positive_float


@CRITERIA.register("softmax")
class NormalizedSoftmaxLoss(Criterion):
    """Normalised softmax (Zhai & Wu, "Classification is a Strong Baseline for Deep Metric
    Learning", BMVC 2019) with a class matrix W (C×D, uniform ±1/√D init):

        logits_ic = x̂_iᵀ ŵ_c / T,   x̂ = x/‖x‖, ŵ_c = w_c/‖w_c‖
        L = mean_i CE(logits_i, y_i)

    Input: embeddings B×D, labels B in 0..C−1 (C = ``opt.n_classes``). W trains at
    ``--loss_softmax_lr`` without weight decay.
    """

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        require_classes(opt, 2, "softmax")
        self.temperature = opt.loss_softmax_temperature
        self.class_lr = opt.loss_softmax_lr
        self.class_matrix = nn.Parameter(uniform_class_matrix(opt.n_classes, opt.embed_dim))

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_softmax_lr",
            type=positive_float,
            default=1e-5,
            help="learning rate of the class matrix (no weight decay; the SOP runs use 0.002)",
        )
        group.add_argument(
            "--loss_softmax_temperature",
            type=positive_float,
            default=0.05,
            help="softmax temperature T",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        labels = labels.to(embeds.device)
        weights = F.normalize(self.class_matrix, dim=1).to(embeds.dtype)
        logits = F.normalize(embeds, dim=1) @ weights.T / self.temperature
        return F.cross_entropy(logits, labels)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [self.class_matrix], "lr": self.class_lr, "weight_decay": 0.0}]
