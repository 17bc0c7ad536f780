"""Pair-counting F1 between k-means clusters and classes (``f1``)."""

from __future__ import annotations

from metrics import METRICS
from metrics.base import EvalInputs, Metric
from metrics.contingency import contingency, pairs


@METRICS.register("f1")
class PairF1(Metric):
    """Pair-counting F1 (Manning, Raghavan, Schütze, "Introduction to Information Retrieval",
    2008, §16.3), as reported by the reference (spec revisiting_dml.md §7.2).

    With n_ck the samples of class c in cluster k (the contingency matrix), n_k and n_c its
    column and row sums:

        TP = Σ_{c,k} C(n_ck, 2),  P = TP / Σ_k C(n_k, 2),  R = TP / Σ_c C(n_c, 2),
        F1 = 2PR / (P + R);  0 where a ratio is undefined (no pair).

    Only the non-zero cells of the contingency matrix are formed, so memory is O(N) even with
    thousands of classes and clusters.
    """

    requires = frozenset({"kmeans"})

    def compute(self, inputs: EvalInputs) -> float:
        clusters = inputs.clusters(self.space)
        if clusters is None:
            return float("nan")
        table = contingency(inputs.query_labels, clusters)
        true_positives = pairs(table.cells)
        if true_positives == 0:
            return 0.0
        precision = true_positives / pairs(table.cluster_sizes)
        recall = true_positives / pairs(table.class_sizes)
        return (2 * precision * recall / (precision + recall)).item()
