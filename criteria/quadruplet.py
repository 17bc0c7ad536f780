"""Quadruplet loss (reference ``criteria/quadruplet.py``)."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from batch_mining.base import BatchMiner, random_choice
from criteria import CRITERIA
from criteria.base import Criterion, distances, zero_loss
from criteria.lifted import distance_rows
from utilities.flag_types import nonnegative_float


@CRITERIA.register("quadruplet")
class QuadrupletLoss(Criterion):
    """Quadruplet loss (Chen et al., "Beyond Triplet Loss: a Deep Quadruplet Network for Person
    Re-identification", CVPR 2017) on mined triplets T, d = sqrt(‖·‖² + 1e-8):

        L = mean_T [d(a,p) − d(a,n) + α₁]₊
          + mean_{T'} mean_{k ∈ K_t} [d(a,p) − d(n,k) + α₂]₊

    The second term pushes the anchor-positive distance below the distance between two samples of
    other classes, as in the paper (y_k ≠ y_a, y_k ≠ y_n): its pair is the triplet's negative n and
    every such k, K_t = {k : y_k ∉ {y_a, y_n}} averaged (deterministic, the expectation of drawing
    one k); T' = the triplets with a non-empty K_t (the term is 0 if there is none).
    ``--loss_quadruplet_reference_fourth`` reproduces the reference exactly instead: triplet s
    draws one batch index j_s < #T uniformly among those whose triplet j has a different negative
    than triplet s (it may be of the anchor's or the negative's class), and since the reference's
    index arrays are T×1 its second term broadcasts to T×T:

        L₂ = (1/(T·|S|)) Σ_{t ∈ T} Σ_{s ∈ S} [d(a_t,p_t) − d(n_t, x_{j_s}) + α₂]₊

    (S = the triplets that found a j_s: all of them whenever two negatives differ).
    """

    requires_batchminer = True

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        self.alpha_1 = opt.loss_quadruplet_margin_alpha_1
        self.alpha_2 = opt.loss_quadruplet_margin_alpha_2
        self.reference_fourth = opt.loss_quadruplet_reference_fourth

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_quadruplet_margin_alpha_1",
            type=nonnegative_float,
            default=0.2,
            help="margin α₁ of the triplet term",
        )
        group.add_argument(
            "--loss_quadruplet_margin_alpha_2",
            type=nonnegative_float,
            default=0.2,
            help="margin α₂ of the quadruplet term",
        )
        group.add_argument(
            "--loss_quadruplet_reference_fourth",
            action="store_true",
            help="reference behaviour: the fourth sample is a random batch index j whose mined "
            "triplet has another negative (any class), not a sample of a third class",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        labels = labels.to(embeds.device)
        mined = self.tuples(embeds, labels, context.get("mined"))
        if len(mined) == 0:
            return zero_loss(embeds)
        anchor, positive, negative = mined.T
        d_ap = distances(embeds[anchor], embeds[positive])
        d_an = distances(embeds[anchor], embeds[negative])
        loss = (d_ap - d_an + self.alpha_1).clamp_min(0).mean()
        fourth = self.fourth_candidates(mined, labels)
        kept = fourth.any(1)
        if not kept.any():
            return loss
        if self.reference_fourth:  # T×1 minus T×|S|: every pair (t, s)
            chosen = fourth[kept].int().argmax(1)
            d_nk = distance_rows(embeds, negative)[:, chosen]
            return loss + (d_ap[:, None] - d_nk + self.alpha_2).clamp_min(0).mean()
        d_nk = distance_rows(embeds, negative[kept])
        hinge = (d_ap[kept, None] - d_nk + self.alpha_2).clamp_min(0)
        weights = fourth[kept].to(hinge.dtype)
        return loss + ((hinge * weights).sum(1) / weights.sum(1)).mean()

    def fourth_candidates(self, mined: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Boolean T×B mask K_t of the fourth samples paired with each triplet's negative."""
        if not self.reference_fourth:
            anchor_class = labels[mined[:, 0], None]
            negative_class = labels[mined[:, 2], None]
            return (labels[None, :] != anchor_class) & (labels[None, :] != negative_class)
        n_triplets, batch_size = len(mined), len(labels)
        index = torch.arange(batch_size, device=labels.device)
        other_negative = torch.zeros(n_triplets, batch_size, dtype=torch.bool, device=labels.device)
        usable = min(n_triplets, batch_size)
        other_negative[:, :usable] = mined[:, 2, None] != mined[None, :usable, 2]
        choice = random_choice(other_negative)
        chosen = index[None, :] == choice[:, None]
        return chosen & other_negative.any(1, keepdim=True)
