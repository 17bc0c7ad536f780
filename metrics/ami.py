"""Adjusted mutual information between k-means clusters and classes (``ami``, opt-in)."""

from __future__ import annotations

from metrics import METRICS
from metrics.base import EvalInputs, Metric


@METRICS.register("ami")
class AMI(Metric):
    """AMI (Vinh, Epps, Bailey, "Information Theoretic Measures for Clusterings Comparison", JMLR
    2010; arithmetic normalisation), of the clusters ``nmi`` uses.

        AMI(Y, C) = (I(Y; C) − E[I]) / ((H(Y) + H(C)) / 2 − E[I])

    E[I]: the expected mutual information of two random labelings with the same margins.
    Computed by ``sklearn.metrics.adjusted_mutual_info_score``; its expectation term is
    super-linear in the number of classes (minutes on SOP's 11k), so it is never a default.
    """

    requires = frozenset({"kmeans"})

    def compute(self, inputs: EvalInputs) -> float:
        from sklearn.metrics import adjusted_mutual_info_score  # 2 s to import: only when used

        clusters = inputs.clusters(self.space)
        if clusters is None:
            return float("nan")
        return float(
            adjusted_mutual_info_score(
                inputs.query_labels.cpu().numpy(),
                clusters.cpu().numpy(),
                average_method="arithmetic",
            )
        )
