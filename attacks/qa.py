"""QA± (query attack), Zhou et al., "Adversarial Ranking Attack and Defense", ECCV 2020."""

from __future__ import annotations

import torch

from attacks import ATTACKS
from attacks.base import (
    Attack,
    Batch,
    CandidateSet,
    neighbourhood_size,
    random_rows,
    top_k_pool,
    uniform_indices,
)


def query_targets(
    batch: Batch, cands: CandidateSet, pm: str, count: int, generator: torch.Generator,
    extra: int = 0,
) -> torch.Tensor:  # fmt: skip
    """B×(count+extra) candidate positions: QA+ draws ``count`` uniformly from the candidates;
    QA− takes a random order of the query's ⌊1%⌋ nearest candidates (itself excluded), of which
    the first ``count`` are the targets and the rest are available as ``extra``."""
    n = cands.gallery.shape[0]
    if pm == "+":
        return uniform_indices((batch.clean.shape[0], count), n, generator, batch.clean.device)
    pool = top_k_pool(
        cands.distances(batch.clean), batch.self_position, neighbourhood_size(n, count + extra)
    )
    return random_rows(pool, pool.shape[1], generator)


def ranking_loss(distances: torch.Tensor, chosen: torch.Tensor, pm: str) -> torch.Tensor:
    """QA+: mean_{m,x} [d(q,c_m) − d(q,x)]₊; QA−: mean_{m,x} [d(q,x) − d(q,c_m)]₊.

    ``distances`` B×N from the perturbed queries to every candidate, ``chosen`` B×M positions.
    """
    gap = distances.gather(1, chosen).unsqueeze(2) - distances.unsqueeze(1)  # B×M×N
    return (gap if pm == "+" else -gap).clamp(min=0).mean()


def relative_rank(distances: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """(B,) mean over m of rank(c_m)/N, rank = number of candidates strictly closer to q."""
    target = distances.gather(1, chosen).unsqueeze(2)  # B×M×1
    return (distances.unsqueeze(1) < target).double().mean(dim=2).mean(dim=1)


@ATTACKS.register("QA")
class QueryAttack(Attack):
    """QA± (Zhou et al., ECCV 2020): move M candidates c_m up (+) or down (−) the ranking of
    the perturbed query q.

    QA+: c_m uniform from the candidate set X; QA−: the first M of a random order of q's ⌊1%⌋
    nearest candidates (q's own clean copy excluded). PGD minimises
        QA+: mean_{m,x} [d(q,c_m) − d(q,x)]₊        QA−: mean_{m,x} [d(q,x) − d(q,c_m)]₊
    Reported ``QA±:prank`` = mean_m rank(c_m)/N_X, rank 0-based in q's ranking (q's clean copy
    not masked); benign ≈ 0.5 for QA+, small for QA−.
    """

    keys = ("pm", "M")
    required = ("pm", "M")

    def select(self, batch: Batch, cands: CandidateSet, generator: torch.Generator) -> dict:
        chosen = query_targets(batch, cands, self.spec.pm, self.spec.M, generator)
        return {"chosen": chosen[:, : self.spec.M]}

    def objective(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> torch.Tensor:
        return ranking_loss(cands.distances(embeds, exact=False), targets["chosen"], self.spec.pm)

    def measure(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> dict[str, torch.Tensor]:
        rank = relative_rank(cands.distances(embeds), targets["chosen"])
        return {f"{self.name}:prank": rank}
