"""The batch-sampler interface: batches of dataset indices from a seeded, resumable generator."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from utilities.errors import ConfigError


class BatchSampler(Sampler[list[int]]):
    """Base class for samplers used as a DataLoader ``batch_sampler``.

    Yields ``len(labels) // bs`` batches of ``bs`` dataset indices per epoch, each drawn
    independently by :meth:`draw_batch` from the sampler's own ``np.random.Generator`` (seeded
    with ``--seed``). ``state_dict()`` holds the generator state as plain Python types, so a
    checkpoint resumes the exact batch sequence.

    A sampler with ``needs_embeddings`` selects batches from the current model's training-set
    embeddings: ``main.py`` passes them to its ``set_embeddings(N×D tensor)`` at the start of each
    epoch (see ``datasampler.embedding_based``).

    ``groups_by_class``: the batch is bs / ``--samples_per_class`` groups of same-class draws
    (every sampler but ``full_random``), so the flag decides whether it can hold positives.

    ``class_members`` lists all dataset indices grouped by class (``class_start[c]`` and
    ``class_size[c]`` delimit class c), so samplers draw with vectorised integer arithmetic.
    """

    registry_key: str
    needs_embeddings = False
    groups_by_class = True  # batches are groups of --samples_per_class same-class draws

    def __init__(self, opt: argparse.Namespace, labels: np.ndarray) -> None:
        self.labels = np.asarray(labels, dtype=np.int64)
        self.bs = int(opt.bs)
        if len(self.labels) < self.bs:
            raise ConfigError(
                f"--bs: batch size {self.bs} is larger than the training set "
                f"({len(self.labels)} samples); expected at most {len(self.labels)}"
            )
        self.rng = np.random.default_rng(opt.seed)
        _, class_of_sample, self.class_size = np.unique(
            self.labels, return_inverse=True, return_counts=True
        )
        self.class_of_sample = class_of_sample.reshape(-1)
        self.class_members = np.argsort(self.class_of_sample, kind="stable")
        self.class_start = np.concatenate([[0], np.cumsum(self.class_size)[:-1]])
        self.rank_in_class = np.empty_like(self.class_members)
        self.rank_in_class[self.class_members] = (
            np.arange(len(self.labels)) - self.class_start[self.class_of_sample[self.class_members]]
        )

    def __len__(self) -> int:
        return len(self.labels) // self.bs

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(len(self)):
            yield self.draw_batch()

    def draw_batch(self) -> list[int]:
        raise NotImplementedError

    def random_members(self, classes: np.ndarray, count: int) -> np.ndarray:
        """``count`` uniform draws with replacement from each class in ``classes``: (len, count)."""
        offsets = self.rng.integers(
            0, self.class_size[classes][:, None], size=(len(classes), count)
        )
        return self.class_members[self.class_start[classes][:, None] + offsets]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["generator"]
