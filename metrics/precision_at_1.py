"""Precision at 1 (``precision_at_1``)."""

from __future__ import annotations

from metrics import METRICS
from metrics.base import EvalInputs, Metric, mean_or_nan


@METRICS.register("precision_at_1")
class PrecisionAt1(Metric):
    """P@1 (Musgrave, Belongie, Lim, "A Metric Learning Reality Check", ECCV 2020, §3.2).

        P@1 = mean over queries with R_q > 0 of 1[y(nn_q(1)) = y_q]

    Euclidean ranking, the query excluded; lone queries (R_q = 0) are left out, as in
    pytorch-metric-learning, so it differs from ``e_recall@1`` exactly when lone queries exist.
    NaN when no query has a relevant gallery item.
    """

    requires = frozenset({"neighbours"})

    def depth(self, inputs: EvalInputs) -> int:
        return 1

    def compute(self, inputs: EvalInputs) -> float:
        kept = inputs.relevant_counts > 0
        return mean_or_nan((inputs.first_hit(self.space) == 1)[kept])
