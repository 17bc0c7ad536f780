# ruff: noqa: N999  (the file is named after its registry key, mAP_robrank)
"""robrank's fixed-depth "mAP@R" (``mAP_robrank``, ``mAP_robrank@k``)."""

from __future__ import annotations

import torch

from metrics import METRICS
from metrics.base import EvalInputs, TopKMetric, mean_or_nan

DEFAULT_DEPTH = 10


@METRICS.register("mAP_robrank")
class RobrankMAPAtR(TopKMetric):
    """robrank's "mAP@R" (Zhou, Wang, Hua, CVPR 2022; spec robustness.md §6): average precision
    over the first k neighbours divided by k, not by the number of relevant items.

    With rel_i = 1[the i-th neighbour shares the query's label], P@i = (1/i) Σ_{j≤i} rel_j:

        AP_q = (1/k) Σ_{i=1}^{k} P@i · rel_i,    mean over all queries,

    k = 10 for plain ``mAP_robrank`` (robrank's fixed R). A query with fewer than k relevant
    items cannot reach 1, so it is not MLRC/PML MAP@R (``mAP_R``).
    """

    default_k = DEFAULT_DEPTH

    def compute(self, inputs: EvalInputs) -> float:
        depth = torch.full_like(inputs.relevant_counts, self.k)
        return mean_or_nan(inputs.relevant_ranks(self.space).average_precision(depth, depth))
