"""Histogram loss (reference ``criteria/histogram.py``)."""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F

from batch_mining.base import BatchMiner
from criteria import CRITERIA
from criteria.base import Criterion
from utilities.errors import ConfigError
from utilities.flag_types import Range


@CRITERIA.register("histogram")
class HistogramLoss(Criterion):
    """Histogram loss (Ustinova & Lempitsky, "Learning Deep Embeddings with Histogram Loss",
    NeurIPS 2016) on the cosine similarities s_ij = x̂_iᵀx̂_j (x̂ = x/‖x‖) of the pairs i < j.

    R = ``--loss_histogram_nbins`` nodes t_r = −1 + rΔ, Δ = 2/(R−1); each similarity is split
    linearly between its two neighbouring nodes, δ_ijr = [1 − |s_ij − t_r|/Δ]₊, giving the
    normalised histograms of the positive (same-class) and negative pairs

        h⁺_r = Σ_{pos} δ_ijr / #pos,   h⁻_r = Σ_{neg} δ_ijr / #neg,
        L = Σ_r h⁻_r Φ⁺_r,   Φ⁺_r = Σ_{q ≤ r} h⁺_q,

    the probability that a negative pair is more similar than a positive one. 0 when the batch
    has no positive or no negative pair.
    """

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        self.nbins = int(opt.loss_histogram_nbins)
        if self.nbins < 2:
            raise ConfigError(
                f"--loss_histogram_nbins: got {self.nbins}, expected at least 2 histogram nodes"
            )

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_histogram_nbins",
            type=Range(int, 2),
            default=65,
            help="number R of histogram nodes on [-1, 1] (the SOP runs use 11)",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        labels = labels.to(embeds.device)
        normed = F.normalize(embeds, dim=1)
        first, second = torch.triu_indices(len(labels), len(labels), 1, device=embeds.device)
        sims = (normed @ normed.T)[first, second].clamp(-1, 1)
        same = (labels[first] == labels[second]).to(sims.dtype)
        pairs = torch.stack([same, 1 - same])  # 2×P: positive and negative pairs
        counts = pairs.sum(1, keepdim=True).clamp_min(1)
        hist_pos, hist_neg = self.soft_histograms(sims, pairs) / counts
        return (hist_neg * hist_pos.cumsum(0)).sum()

    def soft_histograms(self, sims: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """K×R histograms Σ_p pairs_kp · δ_r(s_p): each similarity lands on its two neighbouring
        nodes t_k ≤ s ≤ t_{k+1} with shares 1 − (s − t_k)/Δ and (s − t_k)/Δ. One matrix product
        with the P×R one-hot of the lower node (deterministic on every device, unlike
        scatter-adds)."""
        position = (sims + 1) * (self.nbins - 1) / 2  # s in units of Δ from t_0 = −1
        lower = position.detach().floor().clamp(max=self.nbins - 2).long()
        upper_share = position - lower
        lower_node = F.one_hot(lower, self.nbins).to(sims.dtype)
        to_lower = (pairs * (1 - upper_share)) @ lower_node
        to_upper = (pairs * upper_share) @ lower_node  # mass of node lower + 1
        return to_lower + F.pad(to_upper[:, :-1], (1, 0))
