"""Distance-histogram batch matching (reference ``datasampler/disthist_batchmatch_sampler.py``)."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from datasampler import SAMPLERS
from datasampler.embedding_based import (
    BatchMatchSampler,
    add_big_batch_flag,
    add_lowproj_flag,
    add_ncomps_flag,
)

N_BINS = 50
HISTOGRAM_WEIGHT = 75.0


def distance_histograms(embeds: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Normalised histograms (G×bins) of the pairwise distances (i < j) of each G×n×D set."""
    dists = torch.cdist(embeds, embeds)
    upper = torch.triu_indices(embeds.shape[1], embeds.shape[1], 1, device=embeds.device)
    values = dists[:, upper[0], upper[1]]
    bins = (torch.bucketize(values, edges[1:-1].contiguous(), right=True)).clamp_max(len(edges) - 2)
    counts = torch.zeros(len(values), len(edges) - 1, dtype=embeds.dtype, device=embeds.device)
    counts.scatter_add_(1, bins, torch.ones_like(values))
    return counts / counts.sum(1, keepdim=True).clamp_min(1)


@SAMPLERS.register("disthist_batchmatch")
class DistHistBatchMatchSampler(BatchMatchSampler):
    """Batch matching by embedding moments and distance histograms (Roth et al., ICML 2020).

    Per batch, among ``--data_batchmatch_ncomps`` candidate batches c drawn from an SPC-structured
    big batch b (see :class:`BatchMatchSampler`), keep the one minimising

        ‖μ_b − μ_c‖ + ‖σ_b − σ_c‖ + 75 · 2·W₁(h_b, h_c)

    with μ, σ the per-dimension mean and (population) standard deviation and h the normalised
    histogram of the pairwise distances over 50 bins spanning the big batch's range; W₁ between
    histograms on one grid is Σ_bins |H_b − H_c| · bin width (H the cumulative histograms). The
    reference passes the two arrays of 50 bin heights to scipy's ``wasserstein_distance`` as if
    they were samples (W₁ of the bin-height distributions, blind to where the mass lies), summed
    in both directions, hence 2·W₁; ``--data_batchmatch_reference_wasserstein`` reproduces that
    term for its published sampler numbers. ``len(train) // bs`` batches per epoch.
    """

    def __init__(self, opt: argparse.Namespace, labels: np.ndarray) -> None:
        super().__init__(opt, labels)
        self.reference_wasserstein = bool(opt.data_batchmatch_reference_wasserstein)

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        add_big_batch_flag(group)
        add_ncomps_flag(group)
        add_lowproj_flag(group)
        group.add_argument(
            "--data_batchmatch_reference_wasserstein",
            action="store_true",
            help="disthist_batchmatch: the reference's histogram term, scipy's 1-D Wasserstein "
            "distance between the two arrays of bin heights taken as samples",
        )

    def costs(self, big: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        big_dists = torch.pdist(big)
        low, high = big_dists.min(), big_dists.max().clamp_min(big_dists.min() + 1e-12)
        edges = torch.linspace(0, 1, N_BINS + 1, dtype=big.dtype, device=big.device)
        edges = low + (high - low) * edges
        big_hist = distance_histograms(big[None], edges)
        candidate_hist = distance_histograms(candidates, edges)
        if self.reference_wasserstein:  # W₁ of equal-size samples: mean gap of the sorted values
            gaps = big_hist.sort(1).values - candidate_hist.sort(1).values
            wasserstein = gaps.abs().mean(1)
        else:
            width = (high - low) / N_BINS
            wasserstein = (big_hist.cumsum(1) - candidate_hist.cumsum(1)).abs().sum(1) * width
        mean_gap = (big.mean(0) - candidates.mean(1)).norm(dim=1)
        std_gap = (big.std(0, correction=0) - candidates.std(1, correction=0)).norm(dim=1)
        return mean_gap + std_gap + HISTOGRAM_WEIGHT * 2 * wasserstein
