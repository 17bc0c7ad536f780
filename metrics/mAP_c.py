# ruff: noqa: N999  (the file is named after its registry key, mAP_c)
"""The Revisiting-DML paper's "mAP" (``mAP_c``), kept with its published definition."""

from __future__ import annotations

import torch

from metrics import METRICS
from metrics.base import EvalInputs, Metric, mean_or_nan


@METRICS.register("mAP_c")
class RevisitMAP(Metric):
    """The Revisiting-DML paper's "mAP" (Roth et al., ICML 2020; spec revisiting_dml.md §7.2):
    AP over the first n_y neighbours divided by the class size n_y counting the query, as
    published (a perfect ranking scores (n_y − 1)/n_y); the correct MAP@R is ``mAP_R``.

    n_q = the size of the query's class counting the query (R_q + 1), rel_i and P@i as in MAP@R:

        AP_q = (1/n_q) Σ_{i=1}^{n_q} P@i · rel_i,    mAP_c = mean over all queries.

    The reference's published definition, kept for comparison with its numbers: a perfect
    ranking scores (n_q − 1)/n_q (0.5 for 2-image SOP classes), lone queries score 0 and classes
    weigh by their size. The correct MAP@R is ``mAP_R``. Identical to DADA's ``mAP_R``
    (methods.md §B.6), available as ``mAP_R_dada``.
    """

    requires = frozenset({"neighbours"})

    def cutoff(self, inputs: EvalInputs) -> torch.Tensor:
        """(Nq,) long: how many neighbours of each query the AP sums over."""
        return inputs.relevant_counts + 1

    def depth(self, inputs: EvalInputs) -> int:
        cutoff = self.cutoff(inputs)
        return int(cutoff.max()) if cutoff.numel() else 0

    def compute(self, inputs: EvalInputs) -> float:
        class_sizes = inputs.relevant_counts + 1
        ranks = inputs.relevant_ranks(self.space)
        return mean_or_nan(ranks.average_precision(self.cutoff(inputs), class_sizes))
