"""Normalized mutual information between k-means clusters and classes (``nmi``)."""

from __future__ import annotations

from sklearn.metrics import normalized_mutual_info_score

from metrics import METRICS
from metrics.base import EvalInputs, Metric


@METRICS.register("nmi")
class NMI(Metric):
    """NMI (Strehl & Ghosh, "Cluster Ensembles", JMLR 2002; arithmetic normalisation).

        NMI(Y, C) = I(Y; C) / ((H(Y) + H(C)) / 2)

    Y: labels of the evaluated samples (the queries), C: their k-means cluster ids with K = the
    number of distinct labels. Computed by ``sklearn.metrics.normalized_mutual_info_score``.
    """

    requires = frozenset({"kmeans"})

    def compute(self, inputs: EvalInputs) -> float:
        if inputs.cluster_ids is None:
            return float("nan")
        return float(
            normalized_mutual_info_score(
                inputs.query_labels.cpu().numpy(),
                inputs.cluster_ids.cpu().numpy(),
                average_method="arithmetic",
            )
        )
