"""R-precision (``r_precision``)."""

from __future__ import annotations

import torch

from metrics import METRICS
from metrics.base import EvalInputs, Metric
from metrics.ranking import ROW_BLOCK, mean_or_nan


@METRICS.register("r_precision")
class RPrecision(Metric):
    """R-Precision (Musgrave, Belongie, Lim, "A Metric Learning Reality Check", ECCV 2020, §3.2).

        RP_q = (1/R_q) · Σ_{i=1}^{R_q} rel_i,   RP = mean over queries with R_q > 0

    R_q = gallery items sharing the query's label, the query excluded; Euclidean ranking; NaN
    when no query has a relevant gallery item.
    """

    requires = frozenset({"neighbours"})

    def depth(self, inputs: EvalInputs) -> int:
        return int(inputs.relevant_counts.max()) if inputs.relevant_counts.numel() else 0

    def compute(self, inputs: EvalInputs) -> float:
        counts = inputs.relevant_counts
        kept = counts > 0
        if not bool(kept.any()):
            return float("nan")
        depth = int(counts.max())
        ranks = torch.arange(1, depth + 1, device=counts.device)
        rel = inputs.relevance(depth, self.space)
        hits = counts.new_zeros(counts.shape)
        for start in range(0, rel.shape[0], ROW_BLOCK):
            rows = slice(start, start + ROW_BLOCK)
            hits[rows] = (rel[rows] & (ranks[None, :] <= counts[rows, None])).sum(1)
        return mean_or_nan(hits[kept].double() / counts[kept])
