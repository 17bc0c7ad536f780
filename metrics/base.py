"""What every metric derives from, and the shared inputs the evaluator hands to it.

A metric declares the shared inputs it reads in ``requires`` and, when it reads nearest
neighbours, how deep the ranking must go (``depth``). :class:`metrics.Evaluator` asks every
requested metric first, computes each shared input once (neighbours up to the largest depth,
k-means once) and then calls ``compute`` on each metric with the same :class:`EvalInputs`.

Shared inputs (names used in ``requires``):
* ``"neighbours"``: Euclidean nearest gallery neighbours of every query
  (``EvalInputs.neighbours`` / ``neighbour_labels`` / ``relevance``).
* ``"kmeans"``: k-means cluster id of every query, K = number of distinct query labels
  (``EvalInputs.cluster_ids``).
* ``"model"``: the model that produced the embeddings and the torch dataset they came from
  (``EvalInputs.model`` / ``dataset``), for metrics that must run the model again (attack-based
  robustness scores). Not available for precomputed embeddings (``eval.py --embeddings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from utilities.errors import ConfigError

SHARED_INPUTS = frozenset({"neighbours", "kmeans", "model"})


@dataclass
class EvalInputs:
    """Everything a metric may read for one evaluated split; N samples, Nq queries, Ng gallery.

    ``embeddings`` N×D float32 and ``labels`` (N,) int64 describe the whole split;
    ``query_index`` (Nq,) and ``gallery_index`` (Ng,) index into it. ``self_position`` (Nq,) is
    each query's position in the gallery, -1 when the query is not in the gallery.
    ``relevant_counts`` (Nq,) is R_q: gallery items sharing the query's label, the query itself
    excluded. ``neighbours`` Nq×K holds split indices of the K nearest gallery items of each
    query by Euclidean distance, nearest first, the query itself excluded, -1 where the gallery
    has fewer than K other items; ``neighbour_labels`` their labels. ``cluster_ids`` (Nq,) is the
    k-means cluster of each query. ``model`` and ``dataset``: the network that produced the
    embeddings (items of ``dataset`` are ``(image, label, index)`` in embedding order), given to
    :meth:`metrics.Evaluator.compute` by the training and evaluation loops; ``None`` for
    precomputed embeddings. ``seed`` (``--seed``) seeds every random choice of a metric (k-means
    initialisation, attack targets). Shared inputs nobody requested stay ``None``.
    """

    embeddings: torch.Tensor
    labels: torch.Tensor
    query_index: torch.Tensor
    gallery_index: torch.Tensor
    self_position: torch.Tensor
    relevant_counts: torch.Tensor
    neighbours: torch.Tensor | None = None
    neighbour_labels: torch.Tensor | None = None
    cluster_ids: torch.Tensor | None = None
    model: torch.nn.Module | None = None
    dataset: Any = None
    seed: int = 0

    @property
    def query_labels(self) -> torch.Tensor:
        """Labels of the queries, (Nq,)."""
        return self.labels[self.query_index]

    @property
    def num_classes(self) -> int:
        """Number of distinct labels among the queries (the k-means K)."""
        return int(torch.unique(self.query_labels).numel())

    def relevance(self, k: int) -> torch.Tensor:
        """Nq×k bool: rel_{q,i} = 1[the i-th neighbour of q exists and shares q's label].

        Columns beyond the neighbours computed (a gallery smaller than k) are False.
        """
        if self.neighbours is None or self.neighbour_labels is None:
            raise RuntimeError("relevance() needs the 'neighbours' shared input")
        found = self.neighbours[:, :k]
        rel = (self.neighbour_labels[:, :k] == self.query_labels[:, None]) & (found >= 0)
        missing = k - rel.shape[1]
        if missing > 0:
            rel = torch.cat([rel, rel.new_zeros(rel.shape[0], missing)], dim=1)
        return rel


class Metric:
    """A metric of one evaluated split: ``compute(inputs) -> float``.

    Subclasses set ``requires`` (names from ``SHARED_INPUTS``), register with
    ``@METRICS.register("name")`` and receive the part of their key after ``@`` in ``__init__``
    (``None`` when absent); this base accepts no argument. A metric that takes one names it in
    ``arg_name`` (``"k"`` for ``e_recall@k``).
    """

    requires: ClassVar[frozenset[str]] = frozenset()
    registry_key: ClassVar[str]
    arg_name: ClassVar[str | None] = None

    def __init__(self, arg: str | None = None) -> None:
        self.arg = arg
        if arg is not None:
            self.reject(f"{self.registry_key} without an @ argument")

    @property
    def key(self) -> str:
        """The key as the user wrote it (``e_recall@4``)."""
        return self.registry_key if self.arg is None else f"{self.registry_key}@{self.arg}"

    def reject(self, expected: str) -> None:
        """Raise the one-line error for a bad ``@`` argument."""
        raise ConfigError(f"--evaluation_metrics: got {self.key!r}, expected {expected}")

    def depth(self, inputs: EvalInputs) -> int:
        """How many nearest neighbours this metric reads (0 unless it requires them)."""
        return 0

    def compute(self, inputs: EvalInputs) -> float:
        raise NotImplementedError


def positive_int_arg(metric: Metric) -> int:
    """``metric.arg`` (the ``@k`` of its key) as an integer >= 1; ConfigError otherwise."""
    name = metric.arg_name
    expected = f"{metric.registry_key}@{name} with an integer {name} >= 1"
    try:
        value = int(metric.arg) if metric.arg is not None else 0
    except ValueError:
        value = 0
    if value < 1:
        metric.reject(expected)
    return value
