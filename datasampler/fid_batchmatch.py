"""Fréchet-distance batch matching (reference ``datasampler/fid_batchmatch_sampler.py``)."""

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


def gaussian_fit(embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (…×D) and unbiased covariance (…×D×D) of the rows of …×n×D sets."""
    mean = embeds.mean(-2)
    centred = embeds - mean.unsqueeze(-2)
    return mean, centred.transpose(-1, -2) @ centred / max(embeds.shape[-2] - 1, 1)


def psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a positive semi-definite matrix (negative eigenvalues → 0)."""
    values, vectors = (torch.from_numpy(a) for a in np.linalg.eigh(host(matrix)))
    values, vectors = (
        values.to(matrix.device, matrix.dtype),
        vectors.to(matrix.device, matrix.dtype),
    )
    return (vectors * values.clamp_min(0).sqrt().unsqueeze(-2)) @ vectors.transpose(-1, -2)


def host(matrix: torch.Tensor) -> np.ndarray:
    """The (small, D×D) matrix as a float64 NumPy array: LAPACK on the host is fast and
    predictable, whereas torch's batched CPU eigensolvers stall for seconds on a busy thread pool.
    """
    return matrix.detach().double().cpu().numpy()


@SAMPLERS.register("fid_batchmatch")
class FIDBatchMatchSampler(BatchMatchSampler):
    """Batch matching by the Fréchet distance of Gaussian fits (Heusel et al., NeurIPS 2017, as in
    Roth et al., ICML 2020).

    Per batch, among ``--data_batchmatch_ncomps`` candidate batches c drawn from an SPC-structured
    big batch b (see :class:`BatchMatchSampler`), keep the one minimising

        ‖μ_b − μ_c‖² + Tr Σ_b + Tr Σ_c − 2 Tr (Σ_b^{1/2} Σ_c Σ_b^{1/2})^{1/2}

    (the last trace equals Tr (Σ_b Σ_c)^{1/2}, computed from symmetric eigendecompositions).
    ``len(train) // bs`` batches per epoch. Unreachable in the reference (NameError at selection).
    """

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        add_big_batch_flag(group)
        add_ncomps_flag(group)
        add_lowproj_flag(group)

    def costs(self, big: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        big_mean, big_cov = gaussian_fit(big)
        means, covs = gaussian_fit(candidates)
        root = psd_sqrt(big_cov)
        eigenvalues = torch.from_numpy(np.linalg.eigvalsh(host(root @ covs @ root)))
        cross = eigenvalues.to(big.device, big.dtype).clamp_min(0).sqrt().sum(-1)
        trace = big_cov.diagonal().sum() + covs.diagonal(dim1=-2, dim2=-1).sum(-1)
        return (means - big_mean).pow(2).sum(-1) + trace - 2 * cross
