"""Normalized mutual information between k-means clusters and classes (``nmi``)."""

from __future__ import annotations

import torch

from metrics import METRICS
from metrics.base import EvalInputs, Metric
from metrics.contingency import contingency, entropy


def normalized_mutual_information(labels: torch.Tensor, clusters: torch.Tensor) -> float:
    """NMI with arithmetic normalisation, as sklearn's ``normalized_mutual_info_score``.

    1 when both labelings are one group; 0 when the mutual information is 0. NaN when empty.
    """
    if labels.numel() == 0:
        return float("nan")
    table = contingency(labels, clusters)
    if table.class_sizes.numel() == table.cluster_sizes.numel() == 1:
        return 1.0
    n = float(labels.numel())
    cells = table.cells.double()
    margins = table.class_sizes[table.cell_class] * table.cluster_sizes[table.cell_cluster]
    mutual = (cells / n * (cells * n / margins.double()).log()).sum().clamp(min=0)
    if mutual == 0:
        return 0.0
    mean_entropy = (entropy(table.class_sizes) + entropy(table.cluster_sizes)) / 2
    return (mutual / mean_entropy).item()


@METRICS.register("nmi")
class NMI(Metric):
    """NMI (Strehl & Ghosh, "Cluster Ensembles", JMLR 2002; arithmetic normalisation).

        NMI(Y, C) = I(Y; C) / ((H(Y) + H(C)) / 2),
        I(Y; C) = Σ_{c,k} (n_ck/N) · log(N·n_ck / (n_c·n_k)),  H(Y) = −Σ_c (n_c/N) log(n_c/N)

    Y: labels of the evaluated samples (the queries), C: their k-means cluster ids with K = the
    number of distinct labels of the split evaluated. Computed on the sparse contingency table;
    equal to ``sklearn.metrics.normalized_mutual_info_score`` (checked by the tests).
    """

    requires = frozenset({"kmeans"})

    def compute(self, inputs: EvalInputs) -> float:
        clusters = inputs.clusters(self.space)
        if clusters is None:
            return float("nan")
        return normalized_mutual_information(inputs.query_labels, clusters)
