"""ArcFace (reference ``criteria/arcface.py``), with negative cosines kept."""

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
from utilities.flag_types import nonnegative_float, positive_float


@CRITERIA.register("arcface")
class ArcFaceLoss(Criterion):
    """ArcFace (Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
    CVPR 2019) with a class matrix W (C×D, uniform ±1/√D init), margin m and scale s:

        c_ic = x̂_iᵀ ŵ_c ∈ [−1, 1],   θ_ic = arccos c_ic
        logits_ic = s·cos(θ_ic + m) if c = y_i else s·c_ic
        L = mean_i CE(logits_i, y_i)

    Cosines are clamped to ±(1 − 1e-7) only to keep arccos differentiable. The reference clamps
    them to [1e-10, 1 − 1e-10] (every negative cosine becomes ~0) and, before its commit 703d189
    (the code behind the paper's ArcFace numbers), added the target's shift
    cos(θ_y + m) − c_y to every logit of the row, a row constant that cancels in the softmax:
    ``--loss_arcface_reference_bug`` reproduces both. W trains at ``--loss_arcface_lr``.
    """

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        require_classes(opt, 2, "arcface")
        self.margin = opt.loss_arcface_angular_margin
        self.scale = opt.loss_arcface_feature_scale
        self.class_lr = opt.loss_arcface_lr
        self.reference_bug = opt.loss_arcface_reference_bug
        self.class_matrix = nn.Parameter(uniform_class_matrix(opt.n_classes, opt.embed_dim))

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_arcface_lr",
            type=positive_float,
            default=5e-4,
            help="learning rate of the class matrix (no weight decay)",
        )
        group.add_argument(
            "--loss_arcface_angular_margin",
            type=nonnegative_float,
            default=0.5,
            help="additive angular margin m (radians)",
        )
        group.add_argument(
            "--loss_arcface_feature_scale", type=positive_float, default=16.0, help="logit scale s"
        )
        group.add_argument(
            "--loss_arcface_reference_bug",
            action="store_true",
            help="reproduce the paper-era reference: cosines clamped to [1e-10, 1-1e-10] and the "
            "margin shift added to every logit of the row (a no-op margin)",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        labels = labels.to(embeds.device)
        weights = F.normalize(self.class_matrix, dim=1).to(embeds.dtype)
        cosines = F.normalize(embeds, dim=1) @ weights.T
        if self.reference_bug:
            cosines = cosines.clamp(1e-10, 1 - 1e-10)
        else:
            cosines = cosines.clamp(-1 + 1e-7, 1 - 1e-7)
        target = cosines.gather(1, labels[:, None])
        shift = torch.cos(torch.acos(target) + self.margin) - target
        if self.reference_bug:
            logits = cosines + shift
        else:
            logits = cosines + shift * F.one_hot(labels, cosines.shape[1]).to(cosines.dtype)
        return F.cross_entropy(self.scale * logits, labels)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [self.class_matrix], "lr": self.class_lr, "weight_decay": 0.0}]
