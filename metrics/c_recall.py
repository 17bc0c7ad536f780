"""Recall@k with cosine neighbours (``c_recall@k``)."""

from __future__ import annotations

from metrics import METRICS
from metrics.e_recall import EuclideanRecall


@METRICS.register("c_recall")
class CosineRecall(EuclideanRecall):
    """Recall@k (a hit rate) with neighbours ranked by cosine similarity (Roth et al., ICML 2020).

        R@k = (1/Nq) · Σ_q 1[∃ i ≤ k: y(nn_q(i)) = y_q],  nn ranked by cos(q, g) = q̂·ĝ

    i.e. Euclidean neighbours of the L2-normalised embeddings. Equals ``e_recall@k`` (up to
    ties) when the embeddings are already normalised (``_normalize`` architectures).
    """

    requires = frozenset({"neighbours_cosine"})
    space = "cosine"
