"""Random triplets from within one class (reference ``batchminer/intra_random.py``)."""

from __future__ import annotations

import torch

from batch_mining import MINERS
from batch_mining.base import BatchMiner, triplets


@MINERS.register("intra_random")
class IntraRandomMiner(BatchMiner):
    """Control experiment of Roth et al. (ICML 2020): B triplets whose three members all share a
    class. For each of the B triplets, a class c is drawn uniformly among the classes of the batch,
    then a, p and n independently and uniformly from the samples of class c (with replacement, so
    a = p or a = n can occur):

        c ~ U(classes),   a, p, n ~ U({i : y_i = c})      (``triplet_rule = "one_class"``).

    Registered under its own key: a loss's ``allowed_miners`` sees ``intra_random``, never a
    ``random`` in disguise (the reference names it ``'random'``). Returns T×3 indices, T = B
    (none for an empty batch).
    """

    triplet_rule = "one_class"

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        device = labels.device
        batch_size = len(labels)
        if batch_size == 0:
            return torch.zeros(0, 3, dtype=torch.long, device=device)
        by_class = torch.argsort(labels, stable=True)
        _, counts = torch.unique(labels, return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        classes = torch.randint(len(counts), (batch_size,), device=device)
        offsets = (torch.rand(batch_size, 3, device=device) * counts[classes, None]).long()
        offsets = torch.minimum(offsets, counts[classes, None] - 1)  # rand() * n < n, in float
        members = by_class[starts[classes, None] + offsets]
        return triplets(members[:, 0], members[:, 1], members[:, 2])
