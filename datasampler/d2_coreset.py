"""D²-weighted Gaussian coreset batches (reference ``datasampler/d2_coreset_sampler.py``)."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from datasampler import SAMPLERS
from datasampler.embedding_based import (
    EmbeddingSampler,
    add_big_batch_flag,
    add_lowproj_flag,
    squared_distances,
)
from utilities.flag_types import nonnegative_float


@SAMPLERS.register("d2_coreset")
class D2CoresetSampler(EmbeddingSampler):
    """D²-sampling coreset batches (k-means++-style seeding, Arthur & Vassilvitskii 2007, weighted
    by a Gaussian density), as in Roth et al., ICML 2020.

    Per batch, fit N(μ, Σ) to a fresh random big batch B (``--data_batchmatch_bigbs``, optional
    ``--data_sampler_lowproj_dim`` projection); the first point is the member of B nearest to a
    draw from N(μ, Σ), then each further point x ∈ B \\ S is drawn with probability

        P(x) ∝ N(x; μ, Σ) · (Σ_{s∈S} ‖x − s‖²)^λ,   λ = ``--data_d2_coreset_lambda``

    until bs/spc points are selected (without replacement); each is followed by spc − 1 random
    samples of its class. ``len(train) // bs`` batches per epoch. Σ gets a 1e-6·tr(Σ)/D ridge.
    The reference's index-mapping bug (see ``greedy_coreset``) is fixed.
    """

    def __init__(self, opt: argparse.Namespace, labels: np.ndarray) -> None:
        super().__init__(opt, labels)
        self.exponent = float(opt.data_d2_coreset_lambda)

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        add_big_batch_flag(group)
        add_lowproj_flag(group)
        group.add_argument(
            "--data_d2_coreset_lambda",
            type=nonnegative_float,
            default=1.0,
            help="d2_coreset: exponent λ of the summed squared distance to the selected points",
        )

    def draw_batch(self) -> list[int]:
        big = self.big_batch()
        embeds = self.stored()[torch.as_tensor(big, device=self.stored().device)].double()
        embeds = self.random_projection(embeds)
        return self.fill_classes(big[self.d2_select(embeds)])

    def d2_select(self, embeds: torch.Tensor) -> np.ndarray:
        """Positions (in ``embeds``) of the bs/spc selected points."""
        mean = embeds.mean(0)
        centred = embeds - mean
        cov = centred.T @ centred / max(len(embeds) - 1, 1)
        ridge = 1e-6 * cov.diagonal().mean().clamp_min(1e-12)
        chol = torch.linalg.cholesky(
            cov + ridge * torch.eye(len(cov), dtype=cov.dtype, device=cov.device)
        )
        log_density = -0.5 * torch.cholesky_solve(centred.T, chol).mul(centred.T).sum(0)
        noise = torch.as_tensor(self.rng.standard_normal(len(mean)), dtype=embeds.dtype)
        draw = mean + chol @ noise.to(embeds.device)
        log_density = log_density.cpu().numpy()
        dist = squared_distances(embeds)
        selected = [int((embeds - draw).pow(2).sum(1).argmin())]
        summed = dist[selected[0]].copy()
        for _ in range(self.n_draws - 1):
            log_weights = log_density + self.exponent * np.log(np.maximum(summed, 1e-300))
            log_weights[selected] = -np.inf
            chosen = self.choice(log_weights)
            selected.append(chosen)
            summed += dist[chosen]
        return np.asarray(selected)
