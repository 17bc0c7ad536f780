"""Greedy k-center coreset batches (reference ``datasampler/greedy_coreset_sampler.py``)."""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from datasampler import SAMPLERS
from datasampler.embedding_based import (
    EmbeddingSampler,
    add_big_batch_flag,
    add_lowproj_flag,
    squared_distances,
)


@SAMPLERS.register("greedy_coreset")
class GreedyCoresetSampler(EmbeddingSampler):
    """Greedy k-center coreset batches (Sener & Savarese, "Active Learning for Convolutional
    Neural Networks: A Core-Set Approach", ICLR 2018), as used by Roth et al., ICML 2020.

    Per batch, from a fresh random big batch B of ``--data_batchmatch_bigbs`` samples (optionally
    randomly projected to ``--data_sampler_lowproj_dim`` dimensions), select bs/spc centres S:
    the first uniformly, then repeatedly s = argmax_{x∈B} min_{c∈S} ‖x − c‖²
    (``--data_gc_softened``: uniform among the top 3% of that score); each centre is followed by
    spc − 1 random samples of its class. ``len(train) // bs`` batches per epoch. The reference
    maps the selected positions through a different index array drawn once per epoch, so its
    batches neither match the computed coreset nor vary within an epoch; fixed here.
    """

    def __init__(self, opt: argparse.Namespace, labels: np.ndarray) -> None:
        super().__init__(opt, labels)
        self.softened = bool(opt.data_gc_softened)

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        add_big_batch_flag(group)
        add_lowproj_flag(group)
        group.add_argument(
            "--data_gc_softened",
            action="store_true",
            help="greedy_coreset: pick uniformly among the top 3%% farthest instead of the argmax",
        )

    def draw_batch(self) -> list[int]:
        big = self.big_batch()
        embeds = self.stored()[torch.as_tensor(big, device=self.stored().device)]
        embeds = self.random_projection(embeds)
        return self.fill_classes(big[self.k_center(squared_distances(embeds))])

    def k_center(self, dist: np.ndarray) -> np.ndarray:
        """Positions (rows of the squared-distance matrix) of the greedily selected centres."""
        selected = [int(self.rng.integers(len(dist)))]
        nearest = dist[selected[0]].copy()
        top = max(1, math.ceil(0.03 * len(dist)))
        for _ in range(self.n_draws - 1):
            if self.softened:
                candidates = np.argsort(-nearest, kind="stable")[:top]
                chosen = int(candidates[self.rng.integers(len(candidates))])
            else:
                chosen = int(nearest.argmax())
            selected.append(chosen)
            np.minimum(nearest, dist[chosen], out=nearest)
        return np.asarray(selected)
