"""CA± (candidate attack), Zhou et al., "Adversarial Ranking Attack and Defense", ECCV 2020."""

from __future__ import annotations

import torch

from attacks import ATTACKS
from attacks.base import (
    Attack,
    Batch,
    CandidateSet,
    neighbourhood_size,
    pairwise_distance,
    top_k_pool,
    uniform_indices,
)


@ATTACKS.register("CA")
class CandidateAttack(Attack):
    """CA± (Zhou et al., ECCV 2020): move a candidate c up (+) or down (−) the rankings of W
    queries q_w.

    CA+: q_w uniform from the queries; CA−: W draws (with replacement) from c's ⌊1%⌋ nearest
    queries, c itself excluded. With X the candidate set (c's clean copy included), PGD minimises
        CA+: mean_{w,x} [d(c,q_w) − d(x,q_w)]₊        CA−: mean_{w,x} [d(x,q_w) − d(c,q_w)]₊
    Reported ``CA±:prank`` = mean_w |{x: d(x,q_w) < d(c,q_w)}| / N_X ∈ [0,1] (benign ≈ 0.5 for
    CA+, small for CA−).
    """

    perturbs = "candidate"
    keys = ("pm", "W")
    required = ("pm", "W")

    def select(self, batch: Batch, cands: CandidateSet, generator: torch.Generator) -> dict:
        count, n_queries = self.spec.W, cands.queries.shape[0]
        shape = (batch.clean.shape[0], count)
        if self.spec.pm == "+":
            chosen = uniform_indices(shape, n_queries, generator, batch.clean.device)
        else:
            to_queries = pairwise_distance(batch.clean, cands.queries, cands.metric)
            pool = top_k_pool(to_queries, batch.query_position, neighbourhood_size(n_queries, 1))
            draw = uniform_indices(shape, pool.shape[1], generator, batch.clean.device)
            chosen = pool.gather(1, draw)
        queries = cands.queries[chosen]  # B×W×D
        return {
            "queries": queries,
            "query_to_candidates": pairwise_distance(queries, cands.gallery, cands.metric),
        }

    def objective(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> torch.Tensor:
        to_c = pairwise_distance(targets["queries"], embeds.unsqueeze(1), cands.metric)  # B×W×1
        gap = to_c - targets["query_to_candidates"]
        return (gap if self.spec.pm == "+" else -gap).clamp(min=0).mean()

    def measure(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> dict[str, torch.Tensor]:
        queries, table = targets["queries"], targets["query_to_candidates"]
        to_c = pairwise_distance(queries, embeds.unsqueeze(1), cands.metric)  # B×W×1
        # c's own clean copy is compared with the same arithmetic as c, so equal is not closer.
        rows = (batch.self_position >= 0).nonzero().squeeze(1)
        table = table.clone()
        if rows.numel():
            clean = batch.clean[rows].unsqueeze(1)
            table[rows, :, batch.self_position[rows]] = pairwise_distance(
                queries[rows], clean, cands.metric
            ).squeeze(-1)
        closer = (table < to_c).double().mean(dim=2)  # B×W
        return {f"{self.name}:prank": closer.mean(dim=1)}
