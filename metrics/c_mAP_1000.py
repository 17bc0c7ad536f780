# ruff: noqa: N999  (the file is named after its registry key, c_mAP_1000)
"""``mAP_1000`` on cosine neighbours (``c_mAP_1000``)."""

from __future__ import annotations

from metrics import METRICS
from metrics.mAP_1000 import RevisitMAP1000


@METRICS.register("c_mAP_1000")
class CosineRevisitMAP1000(RevisitMAP1000):
    """``mAP_1000`` ranked by cosine similarity (Roth et al., ICML 2020; revisiting_dml.md §7.2).

    Same formula as ``mAP_1000`` on the neighbours of the L2-normalised embeddings (the
    reference's IndexFlatIP variant).
    """

    requires = frozenset({"neighbours_cosine"})
    space = "cosine"
