"""Distance-histogram batch matching (reference ``datasampler/disthist_batchmatch_sampler.py``)."""

from __future__ import annotations

import argparse

import torch

from datasampler import SAMPLERS
from datasampler.embedding_based import BatchMatchSampler, add_big_batch_flag, add_ncomps_flag

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

    with μ, σ the per-dimension mean and standard deviation and h the normalised histogram of the
    pairwise distances over 50 bins spanning the big batch's range; W₁ between histograms on one
    grid is Σ_bins |H_b − H_c| · bin width (H the cumulative histograms). The reference passes the
    histogram values to scipy's ``wasserstein_distance`` as if they were samples; the cost here is
    the Wasserstein distance of the two distance distributions (the reference sums both
    directions, hence 2·W₁). ``len(train) // bs`` batches per epoch.
    """

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        add_big_batch_flag(group)
        add_ncomps_flag(group)

    def costs(self, big: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        big_dists = torch.pdist(big)
        low, high = big_dists.min(), big_dists.max().clamp_min(big_dists.min() + 1e-12)
        edges = torch.linspace(0, 1, N_BINS + 1, dtype=big.dtype, device=big.device)
        edges = low + (high - low) * edges
        big_hist = distance_histograms(big[None], edges)
        candidate_hist = distance_histograms(candidates, edges)
        width = (high - low) / N_BINS
        wasserstein = (big_hist.cumsum(1) - candidate_hist.cumsum(1)).abs().sum(1) * width
        mean_gap = (big.mean(0) - candidates.mean(1)).norm(dim=1)
        std_gap = (big.std(0) - candidates.std(1)).norm(dim=1)
        return mean_gap + std_gap + HISTOGRAM_WEIGHT * 2 * wasserstein
