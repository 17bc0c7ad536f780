"""Random batches with one guaranteed positive pair.

As the reference ``datasampler/random_sampler.py``.
"""

from __future__ import annotations

import argparse

import numpy as np

from datasampler import SAMPLERS
from datasampler.base import BatchSampler
from utilities.errors import ConfigError


@SAMPLERS.register("full_random")
class FullRandomSampler(BatchSampler):
    """Random batches (Roth et al., ICML 2020, "full random" batch construction).

    bs − 1 draws, each a class drawn uniformly followed by a uniform sample of it (as the
    reference), plus one extra sample of the class of a randomly chosen drawn sample, different
    from that sample when its class has another one: every batch holds at least one positive pair.
    """

    groups_by_class = False

    def __init__(self, opt: argparse.Namespace, labels: np.ndarray) -> None:
        super().__init__(opt, labels)
        if self.bs < 2:
            raise ConfigError(f"--bs: got {self.bs}, expected >= 2 for --data_sampler full_random")

    def draw_batch(self) -> list[int]:
        classes = self.rng.integers(0, len(self.class_size), size=self.bs - 1)
        drawn = self.random_members(classes, 1).reshape(-1)
        partner_of = drawn[self.rng.integers(0, len(drawn))]
        cls = self.class_of_sample[partner_of]
        others = max(int(self.class_size[cls]) - 1, 1)
        offset = int(self.rng.integers(0, others))
        if self.class_size[cls] > 1 and offset >= self.rank_in_class[partner_of]:
            offset += 1
        extra = self.class_members[self.class_start[cls] + offset]
        return [*drawn.tolist(), int(extra)]
