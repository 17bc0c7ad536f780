# ruff: noqa: N999  (the file is named after its registry key, c_mAP_c)
"""``mAP_c`` on cosine neighbours (``c_mAP_c``)."""

from __future__ import annotations

from metrics import METRICS
from metrics.mAP_c import RevisitMAP


@METRICS.register("c_mAP_c")
class CosineRevisitMAP(RevisitMAP):
    """``mAP_c`` ranked by cosine similarity (Roth et al., ICML 2020; revisiting_dml.md §7.2).

    Same formula as ``mAP_c`` on the neighbours of the L2-normalised embeddings (the
    reference's IndexFlatIP variant).
    """

    requires = frozenset({"neighbours_cosine"})
    space = "cosine"
