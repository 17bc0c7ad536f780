"""Multi-similarity loss (reference ``criteria/multisimilarity.py``)."""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F

from batch_mining.base import BatchMiner, class_masks
from criteria import CRITERIA
from criteria.base import Criterion
from criteria.introspective import Introspection
from utilities.flag_types import finite_float, nonnegative_float, positive_float


@CRITERIA.register("multisimilarity")
class MultiSimilarityLoss(Criterion):
    """Multi-similarity loss (Wang et al., "Multi-Similarity Loss with General Pair Weighting for
    Deep Metric Learning", CVPR 2019) with its own pair mining, on cosine similarities
    S = x̂x̂ᵀ (x̂ = x/‖x‖; the reference takes XXᵀ and assumes normalised embeddings).

    Per anchor i with positives P_i (same class, ≠ i) and negatives N_i:

        kept negatives  N'_i = {n ∈ N_i : S_in + ε > min_{p∈P_i} S_ip}
        kept positives  P'_i = {p ∈ P_i : S_ip − ε < max_{n∈N_i} S_in}
        L_i = (1/α) log(1 + Σ_{P'_i} e^{−α(S_ip − λ)}) + (1/β) log(1 + Σ_{N'_i} e^{β(S_in − λ)})
        L   = mean of L_i over the anchors with P'_i and N'_i both non-empty (0 if there is none;
              the reference crashes then, its issue #3)

    α = pos_weight, β = neg_weight, ε = margin, λ = thresh. Computed for all anchors at once as
    masked log-sum-exps (numerically stable for any β).

    With ``--idml`` (an ``uncertainty`` B×E in the context) S is the introspective similarity
    matrix of :mod:`criteria.introspective` (pair form, IDML, Wang et al., TPAMI 2023), in the
    pair mining and in both terms:

        S_I,ij = 1 − (1 − S_ij)·exp(−(‖û_i − û_j‖² + c)/(λ·‖x̂_i − x̂_j‖²)),  ‖x̂_i − x̂_j‖² = 2 − 2S_ij
    """

    introspective = True

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        self.pos_weight = opt.loss_multisimilarity_pos_weight
        self.neg_weight = opt.loss_multisimilarity_neg_weight
        self.margin = opt.loss_multisimilarity_margin
        self.thresh = opt.loss_multisimilarity_thresh
        self.introspection = Introspection.from_options(opt)

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_multisimilarity_pos_weight",
            type=positive_float,
            default=2.0,
            help="α: scale of the positive term",
        )
        group.add_argument(
            "--loss_multisimilarity_neg_weight",
            type=positive_float,
            default=40.0,
            help="β: scale of the negative term",
        )
        group.add_argument(
            "--loss_multisimilarity_margin",
            type=nonnegative_float,
            default=0.1,
            help="ε: pair-mining margin",
        )
        group.add_argument(
            "--loss_multisimilarity_thresh",
            type=finite_float,
            default=0.5,
            help="λ: similarity threshold",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        positives, negatives = class_masks(labels.to(embeds.device))
        normed = F.normalize(embeds, dim=1)
        sim = normed @ normed.T
        uncertainty = context.get("uncertainty")
        if uncertainty is not None:
            sim = self.introspection.similarity_matrix(sim, uncertainty)
        with torch.no_grad():
            inf = torch.full_like(sim, float("inf"))
            hardest_positive = torch.where(positives, sim, inf).min(1, keepdim=True).values
            hardest_negative = torch.where(negatives, sim, -inf).max(1, keepdim=True).values
            kept_negatives = negatives & (sim + self.margin > hardest_positive)
            kept_positives = positives & (sim - self.margin < hardest_negative)
            valid = kept_positives.any(1) & kept_negatives.any(1)
        pos_term = log1p_sum_exp(-self.pos_weight * (sim - self.thresh), kept_positives)
        neg_term = log1p_sum_exp(self.neg_weight * (sim - self.thresh), kept_negatives)
        per_anchor = pos_term / self.pos_weight + neg_term / self.neg_weight
        return torch.where(valid, per_anchor, 0).sum() / valid.sum().clamp_min(1)


def log1p_sum_exp(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise log(1 + Σ_{j: mask_ij} e^{logits_ij}), stable for large logits (0: empty row)."""
    masked = logits.masked_fill(~mask, float("-inf"))
    zeros = torch.zeros_like(logits[:, :1])
    return torch.logsumexp(torch.cat([zeros, masked], dim=1), dim=1)
