"""Plain random batches: a shuffled pass over the training set (the PA/IDML recipes)."""

from __future__ import annotations

from collections.abc import Iterator

from datasampler import SAMPLERS
from datasampler.base import BatchSampler


@SAMPLERS.register("shuffle")
class ShuffleSampler(BatchSampler):
    """A DataLoader with ``shuffle=True, drop_last=True`` (the Proxy-Anchor and IDML reference
    recipes, methods.md §A.5): each epoch one uniform permutation π of the N training samples,
    batch b = π[b·bs : (b+1)·bs] for b < ⌊N / bs⌋; every sample at most once per epoch, no
    class balance (a batch may hold no positive pair).
    """

    groups_by_class = False

    def __iter__(self) -> Iterator[list[int]]:
        order = self.rng.permutation(len(self.labels))
        for start in range(0, len(self) * self.bs, self.bs):
            yield order[start : start + self.bs].tolist()
