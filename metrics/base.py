"""What every metric derives from, and the shared inputs the evaluator hands to it.

A metric declares the shared inputs it reads in ``requires`` and, when it reads the ranking,
how deep it reads it (``depth``, the largest rank it needs exactly). :class:`metrics.Evaluator`
asks every requested metric first, computes each shared input once (the ranks once per space,
k-means once) and then calls ``compute`` on each metric with the same :class:`EvalInputs`.

Shared inputs (names used in ``requires``), each computed once per split and feature space:
* ``"neighbours"``: the Euclidean rank of every relevant gallery item of every query
  (``EvalInputs.relevant_ranks()`` / ``first_hit()``; :mod:`metrics.relevant_ranks`, with its
  tie rule), exact at every depth or, on the top-k path, up to the largest ``depth``.
* ``"neighbours_cosine"``: the same by cosine similarity, i.e. on the L2-normalised features
  (``relevant_ranks("cosine")``).
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

from metrics.relevant_ranks import RelevantRanks
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
    excluded. ``ranks``: the :class:`RelevantRanks` of each space computed ("euclidean",
    "cosine"). When the top-k path computed them, ``neighbours`` Nq×K holds split indices of the
    K nearest gallery items of each query by Euclidean distance, nearest first, the query itself
    excluded, -1 where the gallery has fewer than K other items, and ``neighbour_labels`` their
    labels (None on the exact path). ``cluster_ids`` (Nq,) is the k-means cluster of each query.
    ``cosine_neighbours`` / ``cosine_neighbour_labels`` / ``cosine_cluster_ids``: the same in the
    cosine space (L2-normalised features). ``model`` and
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
    ranks: dict[str, RelevantRanks] = field(default_factory=dict, repr=False)

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

    def relevant_ranks(self, space: str = "euclidean") -> RelevantRanks:
        """The ranks of every query's relevant gallery items in ``space``
        (:class:`metrics.relevant_ranks.RelevantRanks`, tie rule in that module)."""
        if space not in self.ranks:
            raise RuntimeError(f"the {SPACES[space][0]!r} shared input was not computed")
        return self.ranks[space]

    def first_hit(self, space: str = "euclidean") -> torch.Tensor:
        """(Nq,) long: the rank of each query's first relevant item, ``NO_RANK`` (beyond any k)
        when it has none or none within the depth computed; shared by R@k, P@1 and MRR."""
        return self.relevant_ranks(space).first()


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


class TopKMetric(Metric):
    """A metric of the first k ranks: k from its ``@k`` argument, else ``default_k`` (a key
    without ``@k`` is rejected when there is no default)."""

    requires: ClassVar[frozenset[str]] = frozenset({"neighbours"})
    arg_name: ClassVar[str | None] = "k"
    default_k: ClassVar[int | None] = None

    def __init__(self, arg: str | None = None) -> None:
        self.arg = arg
        no_default = self.default_k is None
        self.k = positive_int_arg(self) if arg is not None or no_default else self.default_k

    def depth(self, inputs: EvalInputs) -> int:
        return self.k


def mean_or_nan(values: torch.Tensor) -> float:
    """Mean of ``values`` as a Python float; NaN for an empty tensor."""
    return values.double().mean().item() if values.numel() else float("nan")


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
