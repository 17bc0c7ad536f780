# ruff: noqa: N999  (the file is named after its registry key, mAP_lim)
"""The reference's mAP over min(1023, N) neighbours (``mAP_lim``)."""

from __future__ import annotations

import torch

from metrics import METRICS
from metrics.base import EvalInputs
from metrics.mAP_c import RevisitMAP


@METRICS.register("mAP_lim")
class RevisitMAPLimited(RevisitMAP):
    """The reference's mAP over the first min(1023, N) neighbours, divided by the class size
    counting the query (Roth et al., ICML 2020; spec revisiting_dml.md §7.2).

        AP_q = (1/n_q) Σ_{i=1}^{K} P@i · rel_i,   K = min(1023, N),   mean over all queries,

    n_q = the query's class size counting the query, N = the number of samples of the split
    (1023: the faiss-GPU search limit). Ranks beyond the gallery count as not relevant.
    """

    def cutoff(self, inputs: EvalInputs) -> torch.Tensor:
        limit = min(1023, inputs.labels.numel())
        return torch.full_like(inputs.relevant_counts, limit)
