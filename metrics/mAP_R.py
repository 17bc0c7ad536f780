# ruff: noqa: N999  (the file is named after its registry key, mAP_R)
"""MAP@R, mean average precision at R (``mAP_R``)."""

from __future__ import annotations

import torch

from metrics import METRICS
from metrics.base import EvalInputs, Metric


@METRICS.register("mAP_R")
class MAPAtR(Metric):
    """MAP@R (Musgrave, Belongie, Lim, "A Metric Learning Reality Check", ECCV 2020, §3.2).

    R_q = number of gallery items with the query's label, the query itself excluded;
    rel_i = 1[the i-th neighbour shares the query's label], P@i = (1/i) Σ_{j≤i} rel_j;

        AP@R_q = (1/R_q) Σ_{i=1}^{R_q} P@i · rel_i,    MAP@R = mean over queries with R_q > 0.

    Queries with R_q = 0 (lone labels) are excluded; NaN when none remain. A perfect ranking
    scores 1 (the reference's ``mAP_c`` divides by the class size instead, spec §7.2).
    """

    requires = frozenset({"neighbours"})

    def depth(self, inputs: EvalInputs) -> int:
        return int(inputs.relevant_counts.max()) if inputs.relevant_counts.numel() else 0

    def compute(self, inputs: EvalInputs) -> float:
        counts = inputs.relevant_counts
        kept = counts > 0
        if not bool(kept.any()):
            return float("nan")
        counts = counts[kept]
        depth = int(counts.max())
        ranks = torch.arange(1, depth + 1, device=counts.device)
        rel = inputs.relevance(depth)[kept] & (ranks[None, :] <= counts[:, None])
        precision = rel.cumsum(1).float() / ranks.float()
        average_precision = (precision * rel).sum(1).double() / counts
        return average_precision.mean().item()
