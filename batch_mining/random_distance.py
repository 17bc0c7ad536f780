"""Distance-weighted sampling on shuffled labels (reference ``batchminer/random_distance.py``)."""

from __future__ import annotations

import argparse

import torch

from batch_mining import MINERS
from batch_mining.distance import DistanceMiner


@MINERS.register("random_distance")
class RandomDistanceMiner(DistanceMiner):
    """Control experiment of Roth et al. (ICML 2020): distance-weighted sampling on randomly
    permuted batch labels, so the triplets carry no class information.

    ``distance`` (with its ``--miner_distance_*`` flags) runs on the labels under a uniformly
    random permutation π of the batch:

        y'_i = y_{π(i)},   triplets valid for y' (y'_a = y'_p, a ≠ p, y'_n ≠ y'_a)

    (``triplet_rule = "shuffled_labels"``). Registered under its own key: a loss's
    ``allowed_miners`` sees ``random_distance``, never a ``distance`` in disguise (the reference
    names it ``'distance'``). Returns T×3 indices, one per anchor eligible under y'.
    """

    triplet_rule = "shuffled_labels"

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        """No flags of its own: it reads ``distance``'s ``--miner_distance_*`` flags."""

    def shuffle(self, labels: torch.Tensor) -> torch.Tensor:
        """The labels under a uniformly random permutation (the miner's first random draw)."""
        return labels[torch.randperm(len(labels), device=labels.device)]

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return super().mine(embeds, self.shuffle(labels))
