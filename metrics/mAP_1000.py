# ruff: noqa: N999  (the file is named after its registry key, mAP_1000)
"""The reference's mAP over the first 1000 neighbours (``mAP_1000``)."""

from __future__ import annotations

import torch

from metrics import METRICS
from metrics.base import EvalInputs
from metrics.mAP_c import RevisitMAP


@METRICS.register("mAP_1000")
class RevisitMAP1000(RevisitMAP):
    """The reference's mAP over the first 1000 neighbours, divided by the class size counting
    the query (Roth et al., ICML 2020; spec revisiting_dml.md §7.2).

        AP_q = (1/n_q) Σ_{i=1}^{1000} P@i · rel_i,    mean over all queries,

    n_q = the query's class size counting the query. Defect fixed: with fewer than 1000 other
    gallery items the missing ranks count as not relevant (the reference read the label of
    faiss's −1 index, i.e. of the last sample).
    """

    def cutoff(self, inputs: EvalInputs) -> torch.Tensor:
        return torch.full_like(inputs.relevant_counts, 1000)
