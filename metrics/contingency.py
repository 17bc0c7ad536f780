"""The contingency table of classes × clusters, sparse, for the clustering metrics (no metric here).

Only its non-zero cells are formed (one ``torch.unique`` over N cell ids), so memory is O(N) even
with thousands of classes and clusters (SOP: 11k × 11k).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Contingency(NamedTuple):
    """Non-zero cells n_ck with their class c and cluster k (dense ids), and the margins."""

    cells: torch.Tensor  # (cells,) n_ck > 0
    cell_class: torch.Tensor  # (cells,) c of each cell
    cell_cluster: torch.Tensor  # (cells,) k of each cell
    class_sizes: torch.Tensor  # (C,) n_c
    cluster_sizes: torch.Tensor  # (K,) n_k of the non-empty clusters


def contingency(labels: torch.Tensor, clusters: torch.Tensor) -> Contingency:
    """The sparse contingency table of ``labels`` × ``clusters`` ((N,) integers, N ≥ 1)."""
    _, classes = torch.unique(labels, return_inverse=True)
    _, groups = torch.unique(clusters, return_inverse=True)
    width = int(groups.max()) + 1
    cell_ids, cells = torch.unique(classes * width + groups, return_counts=True)
    return Contingency(
        cells, cell_ids // width, cell_ids % width, torch.bincount(classes), torch.bincount(groups)
    )


def pairs(counts: torch.Tensor) -> torch.Tensor:
    """Σ C(n, 2) over the entries n of ``counts``, as float64."""
    counts = counts.double()
    return (counts * (counts - 1) / 2).sum()


def entropy(counts: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of the distribution given by positive ``counts``, float64."""
    p = counts.double() / counts.sum()
    return -(p * p.log()).sum()
