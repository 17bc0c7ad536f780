"""Recall@k with Euclidean neighbours (``e_recall@k``)."""

from __future__ import annotations

from metrics import METRICS
from metrics.base import EvalInputs, TopKMetric, mean_or_nan


@METRICS.register("e_recall")
class EuclideanRecall(TopKMetric):
    """Recall@k in the deep-metric-learning sense (a hit rate), Euclidean distance.

    Jegou et al., "Product Quantization for Nearest Neighbor Search", TPAMI 2011; used as R@k by
    Oh Song et al., "Deep Metric Learning via Lifted Structured Feature Embedding", CVPR 2016.

        R@k = (1/Nq) · Σ_q 1[∃ i ≤ k: y(nn_q(i)) = y_q]

    over all queries, the query itself excluded from its ranking; a query without any relevant
    gallery item counts as a miss. Read from the rank of each query's first hit, shared by every
    R@k and MRR of the same space.
    """

    def compute(self, inputs: EvalInputs) -> float:
        return mean_or_nan(inputs.first_hit(self.space) <= self.k)
