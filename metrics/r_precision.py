"""R-precision (``r_precision``)."""

from __future__ import annotations

from metrics import METRICS
from metrics.base import EvalInputs, Metric, mean_or_nan


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
        retrieved = inputs.relevant_ranks(self.space).retrieved(counts)
        return mean_or_nan(retrieved[kept].double() / counts[kept])
