# ruff: noqa: N999  (the file is named after its registry key, c_mAP_lim)
"""``mAP_lim`` on cosine neighbours (``c_mAP_lim``)."""

from __future__ import annotations

from metrics import METRICS
from metrics.mAP_lim import RevisitMAPLimited


@METRICS.register("c_mAP_lim")
class CosineRevisitMAPLimited(RevisitMAPLimited):
    """``mAP_lim`` ranked by cosine similarity (Roth et al., ICML 2020; revisiting_dml.md §7.2).

    Same formula as ``mAP_lim`` on the neighbours of the L2-normalised embeddings (the
    reference's IndexFlatIP variant).
    """

    requires = frozenset({"neighbours_cosine"})
    space = "cosine"
