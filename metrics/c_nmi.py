"""NMI of the cosine k-means clustering (``c_nmi``)."""

from __future__ import annotations

from metrics import METRICS
from metrics.nmi import NMI


@METRICS.register("c_nmi")
class CosineNMI(NMI):
    """NMI (Strehl & Ghosh, JMLR 2002) of k-means on the L2-normalised embeddings.

        NMI(Y, C) = I(Y; C) / ((H(Y) + H(C)) / 2)

    C: k-means on the normalised embeddings (K = classes of the evaluated split), each sample
    assigned to the nearest normalised centroid by inner product (the reference used the
    Euclidean centroids here, spec revisiting_dml.md §7.1).
    """

    requires = frozenset({"kmeans_cosine"})
    space = "cosine"
