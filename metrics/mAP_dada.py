# ruff: noqa: N999  (the file is named after its registry key, mAP_dada)
"""DADA's truncated In-Shop "MAP" (``mAP_dada``, ``mAP_dada@k``), kept with its published
definition."""

from __future__ import annotations

import torch

from metrics import METRICS
from metrics.base import EvalInputs, TopKMetric, mean_or_nan

DEFAULT_DEPTH = 50


@METRICS.register("mAP_dada")
class DadaTruncatedMAP(TopKMetric):
    """DADA's In-Shop "MAP" over the top k (Ren et al., AAAI 2024; spec methods.md §B.6),
    normalised by the relevant items *retrieved* in the top k, not by all of them.

    With rel_i and P@i as in MAP@R and H_q = Σ_{i≤k} rel_i:

        AP_q = (1/H_q) Σ_{i=1}^{k} P@i · rel_i  (0 when H_q = 0),   mean over all queries,

    k = 50 for plain ``mAP_dada`` (DADA's top-50 evaluator). A query whose few relevant items
    all come first scores 1 however many it misses, so this is not comparable with ``mAP_R``.
    Euclidean ranking; on L2-normalised embeddings (DADA's default) the same as its cosine one.
    """

    default_k = DEFAULT_DEPTH

    def compute(self, inputs: EvalInputs) -> float:
        ranks = inputs.relevant_ranks(self.space)
        cutoff = torch.full_like(inputs.relevant_counts, self.k)
        retrieved = ranks.retrieved(cutoff)  # H_q
        return mean_or_nan(ranks.average_precision(cutoff, retrieved.clamp(min=1)))
