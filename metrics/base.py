"""What every metric derives from, and the shared inputs the evaluator hands to it.

A metric declares the shared inputs it reads in ``requires`` and, when it reads nearest
neighbours, how deep the ranking must go (``depth``). :class:`metrics.Evaluator` asks every
requested metric first, computes each shared input once (neighbours up to the largest depth,
k-means once) and then calls ``compute`` on each metric with the same :class:`EvalInputs`.

Shared inputs (names used in ``requires``), each computed once per split and feature space:
* ``"neighbours"``: Euclidean nearest gallery neighbours of every query
  (``EvalInputs.neighbours`` / ``neighbour_labels`` / ``relevance(k)`` / ``first_hit()``).
* ``"neighbours_cosine"``: the same ranking by cosine similarity, i.e. on the L2-normalised
  features (``EvalInputs.cosine_neighbours`` / ``relevance(k, "cosine")``...).
* ``"kmeans"``: k-means cluster id of every query, K = number of distinct query labels
  (``EvalInputs.cluster_ids``).
* ``"kmeans_cosine"``: k-means on the L2-normalised features, every query assigned to the
  nearest normalised centroid by inner product (``EvalInputs.cosine_cluster_ids``).
* ``"model"``: the model that produced the embeddings and the torch dataset they came from
  (``EvalInputs.model`` / ``dataset``), for metrics that must run the model again (attack-based
  robustness scores). Not available for precomputed embeddings (``eval.py --embeddings``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from utilities.errors import ConfigError

SHARED_INPUTS = frozenset({"neighbours", "kmeans", "neighbours_cosine", "kmeans_cosine", "model"})
# Feature space -> (its neighbour input, its k-means input).
SPACES = {
    "euclidean": ("neighbours", "kmeans"),
    "cosine": ("neighbours_cosine", "kmeans_cosine"),
}


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
    k-means cluster of each query. ``cosine_neighbours`` / ``cosine_neighbour_labels`` /
    ``cosine_cluster_ids``: the same in the cosine space (L2-normalised features). ``model`` and
    ``dataset``: the network that produced the embeddings (items of ``dataset`` are ``(image,
    label, index)`` in embedding order), given to :meth:`metrics.Evaluator.compute` by the
    training and evaluation loops; ``None`` for
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
    cosine_neighbours: torch.Tensor | None = None
    cosine_neighbour_labels: torch.Tensor | None = None
    cosine_cluster_ids: torch.Tensor | None = None
    model: torch.nn.Module | None = None
    dataset: Any = None
    seed: int = 0
    _first_hits: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def query_labels(self) -> torch.Tensor:
        """Labels of the queries, (Nq,)."""
        return self.labels[self.query_index]

    @property
    def num_classes(self) -> int:
        """Number of distinct labels among the queries (the k-means K)."""
        return int(torch.unique(self.query_labels).numel())

    def ranking(self, space: str = "euclidean") -> tuple[torch.Tensor, torch.Tensor]:
        """(neighbours, neighbour_labels) of ``space`` ("euclidean" or "cosine"), Nq×K each."""
        if space == "cosine":
            found, labels = self.cosine_neighbours, self.cosine_neighbour_labels
        else:
            found, labels = self.neighbours, self.neighbour_labels
        if found is None or labels is None:
            raise RuntimeError(f"the {SPACES[space][0]!r} shared input was not computed")
        return found, labels

    def clusters(self, space: str = "euclidean") -> torch.Tensor | None:
        """k-means cluster id of every query in ``space``, (Nq,) long; None when not computed."""
        return self.cosine_cluster_ids if space == "cosine" else self.cluster_ids

    def features(self, space: str = "euclidean") -> torch.Tensor:
        """N×D features of ``space``: the embeddings, or for "cosine" their L2-normalised rows."""
        if space == "cosine":
            return torch.nn.functional.normalize(self.embeddings, dim=1)
        return self.embeddings

    def relevance(self, k: int, space: str = "euclidean") -> torch.Tensor:
        """Nq×k bool: rel_{q,i} = 1[the i-th neighbour of q exists and shares q's label].

        Columns beyond the neighbours computed (a gallery smaller than k) are False.
        """
        found, labels = self.ranking(space)
        rel = (labels[:, :k] == self.query_labels[:, None]) & (found[:, :k] >= 0)
        missing = k - rel.shape[1]
        if missing > 0:
            rel = torch.cat([rel, rel.new_zeros(rel.shape[0], missing)], dim=1)
        return rel

    def first_hit(self, space: str = "euclidean") -> torch.Tensor:
        """(Nq,) long: 1-based rank of each query's first relevant neighbour, ``NO_HIT`` (beyond
        any k) when none of the neighbours computed is relevant. Computed once per space, shared
        by R@k, P@1 and MRR."""
        if space not in self._first_hits:
            found, labels = self.ranking(space)
            ranks = torch.full((found.shape[0],), NO_HIT, dtype=torch.long, device=found.device)
            for start in range(0, found.shape[0], ROW_BLOCK):
                stop = start + ROW_BLOCK
                rel = (labels[start:stop] == self.query_labels[start:stop, None]) & (
                    found[start:stop] >= 0
                )
                hit = rel.any(1)
                ranks[start:stop][hit] = rel[hit].int().argmax(1) + 1
            self._first_hits[space] = ranks
        return self._first_hits[space]


# first_hit() of a query without any relevant neighbour among those computed.
NO_HIT = 2**62
# Queries handled at once by row-wise passes over Nq×K rankings (bounds temporary memory).
ROW_BLOCK = 8192


class Metric:
    """A metric of one evaluated split: ``compute(inputs) -> float``.

    Subclasses set ``requires`` (names from ``SHARED_INPUTS``), register with
    ``@METRICS.register("name")`` and receive the part of their key after ``@`` in ``__init__``
    (``None`` when absent); this base accepts no argument. A metric that takes one names it in
    ``arg_name`` (``"k"`` for ``e_recall@k``). ``space`` names the feature space the metric reads
    ("euclidean", or "cosine" for the ``c_*`` metrics); its ``requires`` names that space's inputs.
    ``scalar`` is False for a metric whose value is an array (``rho_spectrum@0``, the whole
    spectrum): ``compute`` then returns a 1-D tensor, which :meth:`metrics.Evaluator.compute`
    skips (the per-epoch logs) unless ``with_arrays`` asks for it as a list.
    ``higher_is_better`` is False for metrics where less is better (intra-class distances,
    spectral decay): ``--storage_metrics`` then keeps their lowest value.
    """

    requires: ClassVar[frozenset[str]] = frozenset()
    space: ClassVar[str] = "euclidean"
    registry_key: ClassVar[str]
    arg_name: ClassVar[str | None] = None
    scalar: bool = True
    higher_is_better: bool = True  # which way checkpoint selection and summaries read it

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

    def compute(self, inputs: EvalInputs) -> float | torch.Tensor:
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
