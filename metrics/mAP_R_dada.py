# ruff: noqa: N999  (the file is named after its registry key, mAP_R_dada)
"""DADA's "MAP@R" (``mAP_R_dada``), kept with its published definition."""

from __future__ import annotations

from metrics import METRICS
from metrics.mAP_c import RevisitMAP


@METRICS.register("mAP_R_dada")
class DadaMAPAtR(RevisitMAP):
    """DADA's MAP@R (Ren et al., AAAI 2024; spec methods.md §B.6), deflated by one relevant item.

        AP_q = (1/f_q) Σ_{i=1}^{f_q} P@i · rel_i,   f_q = class size counting the query,

    mean over all queries: the reference's ``mAP_c`` formula. A perfect ranking scores
    (f_q − 1)/f_q, so it is not comparable with MLRC/PML MAP@R (``mAP_R``).
    """
