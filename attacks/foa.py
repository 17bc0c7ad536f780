"""FOA (full-order attack), Zhou et al., "Practical Relative Order Attack in Deep Ranking",
ICCV 2021 (robrank exposes it through its API only)."""

from __future__ import annotations

import torch

from attacks import ATTACKS
from attacks.base import Attack, Batch, CandidateSet, neighbourhood_size, random_rows, top_k_pool


def order_violations(distances: torch.Tensor) -> torch.Tensor:
    """B×M×M: [d_i − d_j]₊ for i < j (0 elsewhere), for target order 0, 1, ..., M−1."""
    m = distances.shape[1]
    upper = torch.ones(m, m, dtype=torch.bool, device=distances.device).triu(diagonal=1)
    gap = distances.unsqueeze(2) - distances.unsqueeze(1)
    return gap.clamp(min=0) * upper


@ATTACKS.register("FOA")
class FullOrderAttack(Attack):
    """FOA (Zhou et al., ICCV 2021): impose a chosen order on M of the query's top candidates.

    M candidates from q's ⌊1%⌋ nearest (own clean copy excluded); target order: a random
    permutation (M > 2) or the reverse of their clean order (M = 2). PGD minimises
        mean_i Σ_{j<k} [d(q,c_{π_j}) − d(q,c_{π_k})]₊.
    Reported: M = 2, ``FOA2:Accuracy`` = 1[the pair is reversed]; M > 2, ``FOA:tau`` = Kendall's
    τ between the target order and the order of d(q,·).
    """

    keys = ("M",)
    required = ("M",)

    def select(self, batch: Batch, cands: CandidateSet, generator: torch.Generator) -> dict:
        m = max(self.spec.M, 2)
        distances = cands.distances(batch.clean)
        pool = top_k_pool(distances, batch.self_position, neighbourhood_size(distances.shape[1], m))
        chosen = random_rows(pool, m, generator)
        if m == 2:  # target: the farther one first
            order = distances.gather(1, chosen).argsort(dim=1, descending=True)
            chosen = chosen.gather(1, order)
        return {"chosen": chosen}

    def objective(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> torch.Tensor:
        distances = cands.distances(embeds, exact=False).gather(1, targets["chosen"])
        return order_violations(distances).sum(dim=(1, 2)).mean()

    def measure(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> dict[str, torch.Tensor]:
        distances = cands.distances(embeds).gather(1, targets["chosen"])
        m = distances.shape[1]
        if m == 2:
            return {"FOA2:Accuracy": (distances[:, 0] < distances[:, 1]).double()}
        upper = torch.ones(m, m, dtype=torch.bool, device=distances.device).triu(diagonal=1)
        sign = torch.sign(distances.unsqueeze(2) - distances.unsqueeze(1))  # −1: concordant
        tau = -(sign * upper).sum(dim=(1, 2)) / upper.sum()
        return {"FOA:tau": tau.double()}
