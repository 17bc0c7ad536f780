"""Random triplet mining (reference ``batchminer/random.py``)."""

from __future__ import annotations

import torch

from batch_mining import MINERS
from batch_mining.base import BatchMiner, class_masks, triplets


@MINERS.register("random")
class RandomMiner(BatchMiner):
    """Uniform random triplets (Roth et al., ICML 2020, "random" baseline).

    Enumerates every valid (a, p, n) with a≠p of the same class and n of another class, then draws
    B of them uniformly without replacement; when fewer than B exist, all of them are returned.
    Returns T×3 indices, T = min(B, #valid).
    """

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        positives, negatives = class_masks(labels)
        pair_anchor, pair_positive = positives.nonzero(as_tuple=True)
        pair_index, negative = negatives[pair_anchor].nonzero(as_tuple=True)
        batch_size = len(labels)
        if len(negative) > batch_size:
            keep = torch.randperm(len(negative), device=labels.device)[:batch_size]
            pair_index, negative = pair_index[keep], negative[keep]
        return triplets(pair_anchor[pair_index], pair_positive[pair_index], negative)
