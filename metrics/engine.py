"""The evaluator: shared inputs computed once per split, then every requested metric from them.

Protocol. Without masks every sample is a query ranked against all other samples. With boolean
``query``/``gallery`` masks (In-Shop), the query rows are ranked against the gallery rows; a row
is excluded from its own ranking only when it is in both. Clustering metrics cluster the queries
(the evaluated set) with K = the number of distinct query labels, so K follows the split being
evaluated, not the training set (a defect of the reference, spec revisiting_dml.md §13.2).

Feature spaces. The Euclidean space ranks and clusters the embeddings as given; the cosine space
(``c_*`` metrics) the L2-normalised embeddings, with its own neighbours and its own k-means. Each
space computes only the inputs its metrics require, neighbours once at the largest depth any of
them needs (the largest R_q for MAP@R), k-means once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from metrics import build_metrics
from metrics.base import SHARED_INPUTS, SPACES, EvalInputs, Metric
from metrics.clustering import kmeans
from metrics.knn import nearest_neighbours, use_faiss
from metrics.relevant_ranks import (
    NO_RANK,
    RelevantRanks,
    exact_ranks,
    ranks_from_neighbours,
    relevant_positions,
)
from utilities.errors import ConfigError

PROGRESS_MIN_SAMPLES = 20_000
RANKINGS = ("auto", "exact", "topk")


class Evaluator:
    """Computes the metrics named by ``metric_keys`` (``["e_recall@1", "nmi", "mAP_R"]``).

    ``kmeans_seed`` seeds the clustering; ``backend`` is "auto" (faiss on CPU tensors when
    installed, torch otherwise), "torch" or "faiss"; ``chunk_size`` bounds the queries scored at
    once (memory chunk·Ng; None: at most ``metrics.knn.CHUNK_ELEMENTS`` scores at once);
    ``show_progress``: progress bars over the neighbour search and torch k-means: True, False, or
    None (the default: shown for large splits, more than ``PROGRESS_MIN_SAMPLES``, when stderr is
    a terminal). ``kmeans_clusters``: a fixed K for every split, to reproduce the reference's
    K = number of *training* classes (spec revisiting_dml.md §15.6); None (the default) uses the
    number of classes of the split evaluated. ``ranking``: how the ranks of the relevant items
    are found (:mod:`metrics.relevant_ranks`): "auto" (the default: one chunked pass counting,
    for every relevant item, the gallery items at least as close, except for queries whose
    relevant items lie deep in the gallery, ranked by a top-k of their score row as deep as the
    deepest metric), "exact" (every query counted, every rank exact) or "topk" (a
    nearest-neighbour search as deep as the deepest metric, with ``backend``).
    ``paths`` records, per space, the path the last call took.
    """

    def __init__(
        self,
        metric_keys: list[str],
        *,
        kmeans_seed: int = 0,
        backend: str = "auto",
        chunk_size: int | None = None,
        show_progress: bool | None = None,
        kmeans_clusters: int | None = None,
        ranking: str = "auto",
    ) -> None:
        self.metrics: list[Metric] = build_metrics(metric_keys)
        unknown = {need for m in self.metrics for need in m.requires} - SHARED_INPUTS
        if unknown:
            raise ValueError(f"metrics require unknown shared inputs {sorted(unknown)}")
        use_faiss(backend, torch.device("cpu"))
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.kmeans_seed = kmeans_seed
        self.backend = backend
        self.chunk_size = chunk_size
        self.show_progress = show_progress
        if kmeans_clusters is not None and kmeans_clusters < 1:
            raise ValueError(f"kmeans_clusters must be >= 1, got {kmeans_clusters}")
        self.kmeans_clusters = kmeans_clusters
        if ranking not in RANKINGS:
            raise ValueError(f"ranking must be one of {RANKINGS}, got {ranking!r}")
        self.ranking = ranking
        self.paths: dict[str, str] = {}

    def compute(
        self,
        embeddings: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray,
        query: Any = None,
        gallery: Any = None,
        *,
        model: torch.nn.Module | None = None,
        dataset: Any = None,
        with_arrays: bool = False,
    ) -> dict[str, float | list[float]]:
        """``{key: value}`` for every requested key, in the order requested.

        embeddings N×D; labels (N,) integer; query/gallery boolean (N,) masks or None;
        ``model``/``dataset``: where the embeddings came from, for metrics requiring ``"model"``.
        Values are floats. Array-valued keys (``rho_spectrum@0``) are skipped without being
        computed, unless ``with_arrays`` asks for them as lists of floats (``eval.py``'s JSON).
        """
        needs_model = [m.key for m in self.metrics if "model" in m.requires]
        if needs_model and (model is None or dataset is None):
            raise ConfigError(
                f"--evaluation_metrics: {', '.join(needs_model)} must run the model; not "
                "available for precomputed embeddings (evaluate a checkpoint instead)"
            )
        inputs = self.prepare(embeddings, labels, query, gallery)
        inputs.model, inputs.dataset, inputs.seed = model, dataset, self.kmeans_seed
        values: dict[str, float | list[float]] = {}
        for metric in self.metrics:
            if not (metric.scalar or with_arrays):
                continue
            value = metric.compute(inputs)
            if metric.scalar:
                values[metric.key] = float(value)
            else:
                values[metric.key] = torch.as_tensor(value).flatten().double().tolist()
        return values

    def prepare(
        self,
        embeddings: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray,
        query: Any = None,
        gallery: Any = None,
    ) -> EvalInputs:
        """The :class:`EvalInputs` of one split, with the shared inputs the metrics require."""
        inputs = _base_inputs(embeddings, labels, query, gallery)
        progress = self.show_progress
        if progress is None and inputs.embeddings.shape[0] < PROGRESS_MIN_SAMPLES:
            progress = False
        self.paths = {}
        relevant = None
        for space, (neighbours_key, kmeans_key) in SPACES.items():
            readers = [m for m in self.metrics if neighbours_key in m.requires]
            clustered = any(kmeans_key in m.requires for m in self.metrics)
            if not readers and not clustered:
                continue
            features = inputs.features(space)
            if readers:
                depth = max(m.depth(inputs) for m in readers)
                if relevant is None:
                    gallery_labels = inputs.labels[inputs.gallery_index]
                    relevant = relevant_positions(
                        inputs.query_labels, gallery_labels, inputs.self_position
                    )
                if self.ranking != "topk":
                    inputs.ranks[space] = exact_ranks(
                        features[inputs.query_index],
                        features[inputs.gallery_index],
                        inputs.self_position,
                        relevant,
                        labels=(inputs.query_labels, gallery_labels),
                        depth=depth if self.ranking == "auto" else None,
                        chunk_size=self.chunk_size,
                        show_progress=progress,
                    )
                else:
                    inputs.ranks[space] = self._topk_ranks(
                        inputs, space, features, depth, relevant, progress
                    )
                self.paths[space] = inputs.ranks[space].path
            if clustered and inputs.query_index.numel() > 0:
                clusters = kmeans(
                    features[inputs.query_index],
                    min(self.kmeans_clusters or inputs.num_classes, inputs.query_index.numel()),
                    seed=self.kmeans_seed,
                    backend=self.backend,
                    chunk_size=self.chunk_size,
                    spherical=space == "cosine",
                    show_progress=progress,
                )
                if space == "cosine":
                    inputs.cosine_cluster_ids = clusters
                else:
                    inputs.cluster_ids = clusters
        return inputs

    def _topk_ranks(
        self,
        inputs: EvalInputs,
        space: str,
        features: torch.Tensor,
        depth: int,
        relevant: tuple[torch.Tensor, torch.Tensor],
        progress: bool | None,
    ) -> RelevantRanks:
        """The ranks from the ``depth`` + 1 nearest gallery items of every query (one more, so a
        tie group reaching past ``depth`` is seen); keeps the ``depth`` nearest as neighbours."""
        positions, distances = nearest_neighbours(
            features[inputs.query_index],
            features[inputs.gallery_index],
            inputs.self_position,
            depth + 1,
            backend=self.backend,
            chunk_size=self.chunk_size,
            show_progress=progress,
        )
        if inputs.gallery_index.numel() != inputs.labels.numel():  # positions -> split indices
            found = positions >= 0
            positions[found] = inputs.gallery_index[positions[found]]
        # -1 (no neighbour) reads the last label; masked by ranks_from_neighbours.
        found_labels = inputs.labels[positions]
        others = inputs.gallery_index.numel() - (inputs.self_position >= 0).long()
        ranks, undetermined = ranks_from_neighbours(
            positions,
            distances,
            found_labels == inputs.query_labels[:, None],
            others > positions.shape[1],
            inputs.relevant_counts,
        )
        if undetermined.numel():  # a tie group with relevant items runs past the search
            exact = exact_ranks(
                features[inputs.query_index[undetermined]],
                features[inputs.gallery_index],
                inputs.self_position[undetermined],
                (relevant[0][undetermined], relevant[1][undetermined]),
                chunk_size=self.chunk_size,
            )
            width = ranks.ranks.shape[1]
            ranks.ranks[undetermined] = exact.ranks[:, :width].masked_fill(
                exact.ranks[:, :width] > ranks.depth, NO_RANK
            )
            ranks.hits[undetermined] = exact.hits[:, :width].masked_fill(
                exact.ranks[:, :width] > ranks.depth, 0
            )
        positions, found_labels = positions[:, :depth], found_labels[:, :depth]
        if space == "cosine":
            inputs.cosine_neighbours, inputs.cosine_neighbour_labels = positions, found_labels
        else:
            inputs.neighbours, inputs.neighbour_labels = positions, found_labels
        return ranks


def _as_mask(mask: Any, n: int, name: str, device: torch.device) -> torch.Tensor:
    if mask is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    mask = torch.as_tensor(np.asarray(mask) if not torch.is_tensor(mask) else mask)
    if mask.dtype != torch.bool or mask.shape != (n,):
        raise ValueError(
            f"{name} mask: got {mask.dtype} of shape {tuple(mask.shape)}, expected bool ({n},)"
        )
    return mask.to(device)


def _base_inputs(
    embeddings: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    query: Any,
    gallery: Any,
) -> EvalInputs:
    embeddings = torch.as_tensor(embeddings).detach().float()
    device = embeddings.device
    labels = torch.as_tensor(labels).to(device=device, dtype=torch.long)
    if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError(
            f"expected N×D embeddings and (N,) labels, got {tuple(embeddings.shape)} "
            f"and {tuple(labels.shape)}"
        )
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError("embeddings contain NaN or infinite values")
    n = embeddings.shape[0]
    query_mask = _as_mask(query, n, "query", device)
    gallery_mask = _as_mask(gallery, n, "gallery", device)
    query_index = query_mask.nonzero().squeeze(1)
    gallery_index = gallery_mask.nonzero().squeeze(1)
    gallery_position = torch.full((n,), -1, dtype=torch.long, device=device)
    gallery_position[gallery_index] = torch.arange(gallery_index.numel(), device=device)
    self_position = gallery_position[query_index]
    return EvalInputs(
        embeddings=embeddings,
        labels=labels,
        query_index=query_index,
        gallery_index=gallery_index,
        self_position=self_position,
        relevant_counts=_relevant_counts(labels[query_index], labels[gallery_index], self_position),
    )


def _relevant_counts(
    query_labels: torch.Tensor, gallery_labels: torch.Tensor, self_position: torch.Tensor
) -> torch.Tensor:
    """R_q: gallery items with the query's label, the query itself excluded, (Nq,) long."""
    if gallery_labels.numel() == 0:
        return torch.zeros_like(query_labels)
    classes, counts = torch.unique(gallery_labels, return_counts=True)
    slot = torch.searchsorted(classes, query_labels).clamp(max=classes.numel() - 1)
    per_query = torch.where(classes[slot] == query_labels, counts[slot], 0)
    return per_query - (self_position >= 0).long()
