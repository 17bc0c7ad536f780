"""Mean reciprocal rank (``mrr``, ``mrr@k``)."""

from __future__ import annotations

from metrics import METRICS
from metrics.base import EvalInputs, Metric, mean_or_nan, positive_int_arg


@METRICS.register("mrr")
class MeanReciprocalRank(Metric):
    """Mean reciprocal rank of the first relevant neighbour within k (plain ``mrr``: k = the
    largest R_q) (Voorhees, "The TREC-8 Question Answering Track Report", TREC 1999).

        MRR = mean over queries with R_q > 0 of 1/rank_q,  0 when no hit within the first K

    rank_q = rank of the first neighbour sharing the query's label (Euclidean, query excluded).
    ``mrr@k`` looks K = k deep; plain ``mrr`` looks K = max_q R_q deep (pytorch-metric-learning's
    ``mean_reciprocal_rank`` with ``k="max_bin_count"``), so it needs no deeper search than MAP@R.
    Lone queries (R_q = 0) are left out; NaN when none remains.
    """

    requires = frozenset({"neighbours"})
    arg_name = "k"

    def __init__(self, arg: str | None = None) -> None:
        self.arg = arg
        self.k = None if arg is None else positive_int_arg(self)

    def depth(self, inputs: EvalInputs) -> int:
        if self.k is not None:
            return self.k
        return int(inputs.relevant_counts.max()) if inputs.relevant_counts.numel() else 0

    def compute(self, inputs: EvalInputs) -> float:
        rank = inputs.first_hit(self.space)
        reciprocal = (rank <= self.depth(inputs)) / rank.double()
        return mean_or_nan(reciprocal[inputs.relevant_counts > 0])
