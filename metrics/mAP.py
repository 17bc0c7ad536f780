# ruff: noqa: N999  (the file is named after its registry key, mAP)
"""Mean average precision over the whole ranking (``mAP``)."""

from __future__ import annotations

import torch

from metrics import METRICS
from metrics.base import EvalInputs, Metric, mean_or_nan


@METRICS.register("mAP")
class FullMAP(Metric):
    """mAP over the full ranking: robrank's "mAP" column (Zhou, Wang, Hua, "Enhancing
    Adversarial Robustness for Deep Metric Learning", CVPR 2022; spec robustness.md §6), the
    mean average precision of information retrieval.

    With the query's R_q relevant gallery items (its label, itself excluded) at ranks
    π_1 < π_2 < … < π_{R_q} of its full ranking:

        AP_q = (1/R_q) Σ_{j=1}^{R_q} j / π_j,    mAP = mean over queries with R_q > 0.

    Unlike MAP@R it reads every rank, however deep; NaN when no query has a relevant item.
    """

    requires = frozenset({"neighbours"})

    def __init__(self, arg: str | None = None) -> None:
        self.arg = arg
        if arg is not None:  # "mAP@R" is meant as MAP@R
            suggestion = f"; did you mean 'mAP_{arg}'" if arg == "R" else ""
            self.reject(f"mAP without an @ argument{suggestion}")

    def depth(self, inputs: EvalInputs) -> int:
        return int(inputs.gallery_index.numel())

    def compute(self, inputs: EvalInputs) -> float:
        counts = inputs.relevant_counts
        cutoff = torch.full_like(counts, self.depth(inputs))
        precisions = inputs.relevant_ranks(self.space).average_precision(
            cutoff, counts.clamp(min=1)
        )
        return mean_or_nan(precisions[counts > 0])
