"""Fixed parametric negative-sampling distributions (reference ``batchminer/parametric.py``)."""

from __future__ import annotations

import argparse

import torch

from batch_mining import MINERS
from batch_mining.base import (
    BatchMiner,
    class_masks,
    pairwise_distances,
    random_choice,
    triplets,
)
from utilities.errors import ConfigError
from utilities.flag_types import nonnegative_float, positive_int

# Distance range [low, high] of the bins each mode samples from (a bin belongs to the range when
# its centre does).
MODE_RANGES: dict[str, tuple[float, float]] = {
    "uniform": (float("-inf"), float("inf")),
    "hards": (float("-inf"), 0.5),
    "semihards": (0.3, 0.7),
    "veryhards": (float("-inf"), 0.3),
}


@MINERS.register("parametric")
class ParametricMiner(BatchMiner):
    """Negatives drawn from a fixed distribution over distance bins, as the sampling distributions
    of PADS (Roth, Milbich & Ommer, "PADS: Policy-Adapted Sampling for Visual Similarity Learning",
    CVPR 2020), without the learned policy.

    The support [s_lo, s_hi] = ``--miner_parametric_support_lim`` is cut by
    ``--miner_parametric_n_support`` equally spaced edges s_0 = s_lo < … < s_K = s_hi into
    K = n_support − 1 bins (s_k, s_{k+1}]; bin k has weight w_k = 1 when its centre
    (s_k + s_{k+1})/2 lies in the mode's range, else 0 (the reference judges a bin by its left
    edge):

        uniform: all bins,   hards: ≤ 0.5,   semihards: [0.3, 0.7],   veryhards: ≤ 0.3.

    For each anchor with a positive and a negative, a negative n is drawn with probability
    ∝ w_{bin(d(a,n))} (0 outside the support); when no negative has weight, uniformly among the
    negatives. The positive is a random same-class sample ≠ a. Assumes L2-normalised embeddings.
    Returns T×3 indices, one triplet per eligible anchor.

    (The reference never defines these flags, stops in an ``IPython.embed()`` in ``semihards``,
    keeps weight outside the semihard window and never excludes distances outside the support.)
    """

    def __init__(self, opt: argparse.Namespace) -> None:
        super().__init__(opt)
        self.mode = opt.miner_parametric_mode
        low, high = (float(value) for value in opt.miner_parametric_support_lim)
        n_support = int(opt.miner_parametric_n_support)
        if self.mode not in MODE_RANGES:
            raise ConfigError(
                f"--miner_parametric_mode: unknown mode {self.mode!r}; "
                f"expected one of {', '.join(MODE_RANGES)}"
            )
        if n_support < 2:
            raise ConfigError(
                f"--miner_parametric_n_support: got {n_support}, expected at least 2 bin edges"
            )
        if not low < high:
            raise ConfigError(
                f"--miner_parametric_support_lim: got {low} {high}, expected LOW < HIGH"
            )
        self.edges = torch.linspace(low, high, n_support, dtype=torch.float64)
        centres = (self.edges[1:] + self.edges[:-1]) / 2
        range_low, range_high = MODE_RANGES[self.mode]
        self.bin_weights = ((centres >= range_low) & (centres <= range_high)).double()

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--miner_parametric_mode",
            default="uniform",
            choices=tuple(MODE_RANGES),
            help="distance range negatives are drawn from: uniform (the whole support), "
            "hards (≤ 0.5), semihards (0.3 to 0.7), veryhards (≤ 0.3)",
        )
        group.add_argument(
            "--miner_parametric_n_support",
            type=positive_int,
            default=30,
            help="number of equally spaced bin edges over the support (PADS' default)",
        )
        group.add_argument(
            "--miner_parametric_support_lim",
            type=nonnegative_float,
            nargs=2,
            default=[0.1, 1.4],
            metavar=("LOW", "HIGH"),
            help="distance support of the sampling distribution (PADS' default)",
        )

    def negative_weights(self, dist: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """Per-entry sampling weight w_{bin(d)} on negatives inside the support, 0 elsewhere."""
        edges = self.edges.to(dist.device, dist.dtype)
        bins = torch.bucketize(dist, edges[1:-1])  # number of inner edges strictly below d
        weights = self.bin_weights.to(dist.device, dist.dtype)[bins]
        inside = (dist >= edges[0]) & (dist <= edges[-1])
        return torch.where(negatives & inside, weights, torch.zeros_like(weights))

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dist = pairwise_distances(embeds)
        positives, negatives = class_masks(labels)
        anchors = (positives.any(1) & negatives.any(1)).nonzero().squeeze(1)
        dist, positives, negatives = dist[anchors], positives[anchors], negatives[anchors]
        weights = self.negative_weights(dist, negatives)
        has_weight = weights.sum(1, keepdim=True) > 0
        weights = torch.where(has_weight, weights, negatives.to(weights.dtype))
        negative = torch.multinomial(weights, 1).squeeze(1) if len(anchors) else anchors
        positive = random_choice(positives)
        return triplets(anchors, positive, negative)
