"""SPC-N class-random sampling (reference ``datasampler/class_random_sampler.py``)."""

from __future__ import annotations

import argparse

import numpy as np

from datasampler import SAMPLERS
from datasampler.base import BatchSampler


@SAMPLERS.register("class_random")
class ClassRandomSampler(BatchSampler):
    """SPC-N batches (Roth et al., ICML 2020, §4 "batch construction").

    A batch is bs/N class draws, each a class drawn uniformly with replacement (a class may repeat)
    followed by N = ``--samples_per_class`` samples of it drawn uniformly with replacement, in
    consecutive positions.
    """

    def __init__(self, opt: argparse.Namespace, labels: np.ndarray) -> None:
        super().__init__(opt, labels)
        self.samples_per_class = int(opt.samples_per_class)

    def draw_batch(self) -> list[int]:
        n_draws = self.bs // self.samples_per_class
        classes = self.rng.integers(0, len(self.class_size), size=n_draws)
        return self.random_members(classes, self.samples_per_class).reshape(-1).tolist()
