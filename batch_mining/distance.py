"""Distance-weighted sampling (reference ``batchminer/distance.py``)."""

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
from utilities.flag_types import nonnegative_float, positive_float


@MINERS.register("distance")
class DistanceMiner(BatchMiner):
    """Distance-weighted negative sampling (Wu et al., "Sampling Matters in Deep Embedding
    Learning", ICCV 2017). Assumes L2-normalised embeddings (pairwise distances in [0, 2]).

    On the unit sphere in R^n, pairwise distances have density q(d) ∝ d^(n-2) (1 - d²/4)^((n-3)/2).
    Negatives are drawn with probability ∝ q(d)⁻¹, d clamped to ≥ lower cutoff:
        log q⁻¹(d) = (2 - n) log d - ((n - 3)/2) log(1 - d²/4),
    computed in log space and max-subtracted per row (d ≥ 1e-6 and 1 - d²/4 ≥ 1e-12 keep the logs
    finite). Same-class samples (and the anchor) get
    weight 0, and so do negatives farther than the upper cutoff (unless
    ``--miner_distance_no_upper_cutoff``); a row left without weight falls back to a uniform
    negative. The positive is a random same-class sample ≠ anchor; anchors without a positive or a
    negative are skipped. Returns T×3 indices, one triplet per eligible anchor.
    """

    flag_name = "distance"  # reads --miner_<flag_name>_{lower,upper}_cutoff, ..._no_upper_cutoff

    def __init__(self, opt: argparse.Namespace) -> None:
        super().__init__(opt)
        prefix = f"miner_{self.flag_name}"
        self.lower_cutoff = getattr(opt, f"{prefix}_lower_cutoff")
        self.upper_cutoff = (
            None
            if getattr(opt, f"{prefix}_no_upper_cutoff")
            else getattr(opt, f"{prefix}_upper_cutoff")
        )

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        add_cutoff_arguments(group, "distance")

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dist = pairwise_distances(embeds)
        positives, negatives = class_masks(labels)
        anchors = (positives.any(1) & negatives.any(1)).nonzero().squeeze(1)
        dist, positives, negatives = dist[anchors], positives[anchors], negatives[anchors]
        if self.upper_cutoff is None:
            weights = self.negative_weights(dist, negatives, embeds.shape[1])
        else:
            within = negatives & (dist <= self.upper_cutoff)
            has_within = within.any(1, keepdim=True)
            weights = self.negative_weights(
                dist, torch.where(has_within, within, negatives), embeds.shape[1]
            )
            # No negative within the cutoff: uniform over the negatives (as Wu et al.'s code).
            weights = torch.where(has_within, weights, negatives.to(weights.dtype))
        negative = torch.multinomial(weights, 1).squeeze(1) if len(anchors) else anchors
        positive = random_choice(positives)
        return triplets(anchors, positive, negative)

    def negative_weights(
        self, dist: torch.Tensor, eligible: torch.Tensor, dim: int
    ) -> torch.Tensor:
        """Row-wise q(d)⁻¹ weights (max 1) on the eligible entries, 0 elsewhere."""
        d = dist.float().clamp_min(max(self.lower_cutoff, 1e-6))
        one_minus = (1 - d.pow(2) / 4).clamp_min(1e-12)
        log_weight = (2 - dim) * d.log() - ((dim - 3) / 2) * one_minus.log()
        log_weight = log_weight.masked_fill(~eligible, float("-inf"))
        log_weight = log_weight - log_weight.max(1, keepdim=True).values
        return log_weight.exp()


def add_cutoff_arguments(group: argparse._ArgumentGroup, name: str) -> None:
    """The cutoff flags ``--miner_<name>_{lower,upper}_cutoff`` and ``..._no_upper_cutoff``."""
    group.add_argument(
        f"--miner_{name}_lower_cutoff",
        type=nonnegative_float,
        default=0.5,
        help="distances are clamped to at least this before weighting",
    )
    group.add_argument(
        f"--miner_{name}_upper_cutoff",
        type=positive_float,
        default=1.4,
        help="negatives farther than this are not sampled (weight 0)",
    )
    group.add_argument(
        f"--miner_{name}_no_upper_cutoff",
        action="store_true",
        help=f"reference behaviour: ignore --miner_{name}_upper_cutoff (the reference "
        "documents it but never applies it)",
    )
