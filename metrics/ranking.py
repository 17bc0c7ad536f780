"""Average precision over the shared neighbour ranking, for the MAP metrics (no metric here).

Every MAP variant is one call of :func:`mean_average_precision` with its own cut-off, divisor and
choice of queries: per query q with relevance rel_i of its i-th neighbour and
P@i = (1/i)·Σ_{j≤i} rel_j,

    AP_q = (1/divisor_q) · Σ_{i ≤ cutoff_q} P@i · rel_i.

Rows are processed in blocks of queries, so the temporaries stay O(block·K) whatever Nq.
"""

from __future__ import annotations

import torch

from metrics.base import ROW_BLOCK, EvalInputs


def average_precisions(
    inputs: EvalInputs, cutoff: torch.Tensor, divisor: torch.Tensor, space: str = "euclidean"
) -> torch.Tensor:
    """AP_q of every query, (Nq,) float64; ``cutoff`` (Nq,) long, ``divisor`` (Nq,) > 0.

    Neighbours beyond those computed count as not relevant.
    """
    depth = int(cutoff.max()) if cutoff.numel() else 0
    result = torch.zeros(cutoff.shape[0], dtype=torch.float64, device=cutoff.device)
    if depth <= 0:
        return result
    ranks = torch.arange(1, depth + 1, device=cutoff.device)
    rel = inputs.relevance(depth, space)
    for start in range(0, rel.shape[0], ROW_BLOCK):
        block = rel[start : start + ROW_BLOCK] & (
            ranks[None, :] <= cutoff[start : start + ROW_BLOCK, None]
        )
        precision = block.cumsum(1, dtype=torch.float64) / ranks
        result[start : start + ROW_BLOCK] = (precision * block).sum(1)
    return result / divisor.double()


def mean_or_nan(values: torch.Tensor) -> float:
    """Mean of ``values`` as a Python float; NaN for an empty tensor."""
    return values.double().mean().item() if values.numel() else float("nan")
