# ruff: noqa: N999  (the file is named after its registry key, mAP_R)
"""MAP@R, mean average precision at R (``mAP_R``)."""

from __future__ import annotations

from metrics import METRICS
from metrics.base import EvalInputs, Metric, mean_or_nan


@METRICS.register("mAP_R")
class MAPAtR(Metric):
    """MAP@R (Musgrave, Belongie, Lim, "A Metric Learning Reality Check", ECCV 2020, §3.2).

    R_q = number of gallery items with the query's label, the query itself excluded;
    rel_i = 1[the i-th neighbour shares the query's label], P@i = (1/i) Σ_{j≤i} rel_j;

        AP@R_q = (1/R_q) Σ_{i=1}^{R_q} P@i · rel_i,    MAP@R = mean over queries with R_q > 0.

    Queries with R_q = 0 (lone labels) are excluded; NaN when none remain. A perfect ranking
    scores 1. This is pytorch-metric-learning's ``mean_average_precision_at_r``; the reference's
    paper "mAP" (divisor and cut-off = the class size including the query) is ``mAP_c``.
    """

    requires = frozenset({"neighbours"})

    def depth(self, inputs: EvalInputs) -> int:
        return int(inputs.relevant_counts.max()) if inputs.relevant_counts.numel() else 0

    def compute(self, inputs: EvalInputs) -> float:
        counts = inputs.relevant_counts
        kept = counts > 0
        ranks = inputs.relevant_ranks(self.space)
        precisions = ranks.average_precision(counts.clamp(min=1), counts.clamp(min=1))
        return mean_or_nan(precisions[kept])
