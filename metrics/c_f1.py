"""Pair-counting F1 of the cosine k-means clustering (``c_f1``)."""

from __future__ import annotations

from metrics import METRICS
from metrics.f1 import PairF1


@METRICS.register("c_f1")
class CosinePairF1(PairF1):
    """Pair-counting F1 (Manning et al., 2008, §16.3) of k-means on the L2-normalised embeddings.

        TP = Σ_{c,k} C(n_ck, 2),  P = TP / Σ_k C(n_k, 2),  R = TP / Σ_c C(n_c, 2),  F1 = 2PR/(P+R)

    with the clusters of ``c_nmi`` (k-means on the normalised embeddings, nearest normalised
    centroid by inner product).
    """

    requires = frozenset({"kmeans_cosine"})
    space = "cosine"
