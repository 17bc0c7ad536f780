"""Seeded k-means in the embedding space; every point's cluster id is its nearest centroid.

Settings follow the reference's faiss call (spec revisiting_dml.md §7.1):
``faiss.Kmeans(d, K, niter=20, seed, min_points_per_centroid=1, max_points_per_centroid=1e9)``.
Without faiss (or on a GPU, or with backend "torch") a torch Lloyd iteration does the same job:
K distinct data points drawn with the seed as initial centroids, then 20 rounds of
assign-to-nearest (chunked, memory O(chunk·K)) and centroid = mean of its points. A centroid
left without points is replaced by a slightly perturbed copy of a centroid drawn with
probability proportional to its size minus one, which is then perturbed the other way
(faiss's rule). The rounds stop early at Lloyd's fixed point, where the rest would change
nothing, and that round's assignment is then the result. Cost: at most 21 assignment passes
(20 rounds and the final one), each an N×K matrix product plus a row argmin; the benchmark
``benchmarks/kmeans_speed.py`` measures both backends against 20 bare products.

Cosine clustering (``spherical=True``, the ``c_nmi``/``c_f1`` metrics) runs the same k-means on
the L2-normalised features it is given and assigns every point to the nearest *normalised*
centroid by inner product (the reference's intent; at HEAD it normalised the Euclidean
centroids, spec revisiting_dml.md §7.1).
"""

from __future__ import annotations

import sys

import torch
from tqdm import tqdm

from metrics.knn import chunk_rows, faiss_module, use_faiss

NITER = 20
_SPLIT_EPS = 1.0 / 1024
# Default score block of the assignment on the CPU: 2**22 float32 scores (16 MiB), >= 256 rows.
ASSIGN_CHUNK_ELEMENTS = 2**22
ASSIGN_MIN_ROWS = 256
# Two-level argmin on the CPU (see _grouped_argmin) from this many centroids on (below it the
# plain argmin measured faster).
ARGMIN_GROUP = 64
GROUPED_ARGMIN_MIN_K = 256


def kmeans(
    embeddings: torch.Tensor,
    k: int,
    *,
    seed: int = 0,
    backend: str = "auto",
    chunk_size: int | None = None,
    spherical: bool = False,
    show_progress: bool | None = False,
) -> torch.Tensor:
    """Cluster id in ``0..k-1`` of every row of ``embeddings`` (N×D), (N,) long, same device.

    ``spherical``: assign by inner product with the L2-normalised centroids instead of by
    Euclidean distance to the centroids. ``chunk_size``: points scored at once (None: a score
    block of about ``ASSIGN_CHUNK_ELEMENTS``); ``show_progress`` as in
    :func:`metrics.knn.nearest_neighbours`.
    """
    points = embeddings.float()
    centroids, assignment = _centroids_and_assignment(
        points, k, seed, backend, chunk_size, show_progress
    )
    if spherical:
        # For unit centroids the nearest by Euclidean distance is the largest inner product.
        centroids, assignment = torch.nn.functional.normalize(centroids, dim=1), None
    if assignment is not None:  # Lloyd converged: the last assignment is the final one
        return assignment
    return nearest_centroid(points, centroids, assign_rows(chunk_size, k, points.device), backend)


def kmeans_centroids(
    embeddings: torch.Tensor,
    k: int,
    *,
    seed: int = 0,
    backend: str = "auto",
    chunk_size: int | None = None,
    show_progress: bool | None = False,
) -> torch.Tensor:
    """K×D float32 centroids of ``embeddings`` (N×D) after the seeded k-means, same device."""
    points = embeddings.float()
    return _centroids_and_assignment(points, k, seed, backend, chunk_size, show_progress)[0]


def assign_rows(chunk_size: int | None, k: int, device: torch.device) -> int:
    """Points scored at once against ``k`` centroids: ``chunk_size``, or by default on the CPU
    enough for ``ASSIGN_CHUNK_ELEMENTS`` scores (at least ``ASSIGN_MIN_ROWS``: the block stays
    in the cache for the argmin, the product still reuses each centroid over many rows), on an
    accelerator :func:`metrics.knn.chunk_rows`'s larger blocks."""
    if chunk_size is not None:
        return chunk_size
    if device.type != "cpu":
        return chunk_rows(None, k)
    return max(ASSIGN_MIN_ROWS, ASSIGN_CHUNK_ELEMENTS // max(k, 1))


def _centroids_and_assignment(
    points: torch.Tensor,
    k: int,
    seed: int,
    backend: str,
    chunk_size: int | None,
    show_progress: bool | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(K×D centroids, the points' nearest-centroid ids when already known, else None)."""
    if use_faiss(backend, points.device):
        # faiss reports its iterations itself (on stdout), under the same rule as the bars.
        verbose = sys.stderr.isatty() if show_progress is None else show_progress
        return _faiss_kmeans(points, k, seed, verbose=verbose), None
    with tqdm(
        total=NITER,
        desc=f"k-means (K={k})",
        disable=None if show_progress is None else not show_progress,
        leave=False,
    ) as progress:
        return _torch_kmeans(points, k, seed, assign_rows(chunk_size, k, points.device), progress)


def _faiss_kmeans(embeddings: torch.Tensor, k: int, seed: int, verbose: bool) -> torch.Tensor:
    faiss = faiss_module()
    points = embeddings.detach().float().cpu().contiguous().numpy()
    clustering = faiss.Kmeans(
        points.shape[1],
        k,
        niter=NITER,
        seed=seed,
        min_points_per_centroid=1,
        max_points_per_centroid=10**9,
        verbose=verbose,
    )
    clustering.train(points)
    return torch.from_numpy(clustering.centroids).to(embeddings.device)


def nearest_centroid(
    points: torch.Tensor, centroids: torch.Tensor, chunk_size: int, backend: str = "torch"
) -> torch.Tensor:
    """Index of the nearest centroid (Euclidean) of every point, (N,) long, chunked over points.

    ``backend`` as in :func:`metrics.knn.use_faiss` (faiss: an exact ``IndexFlatL2`` search).
    torch: ``‖c‖² − 2 x·c`` for ``chunk_size`` points at a time by one ``addmm`` into a reused
    score block, then the first minimum of each row (ties: the lowest centroid index).
    """
    if use_faiss(backend, points.device):
        faiss = faiss_module()
        index = faiss.IndexFlatL2(centroids.shape[1])
        index.add(centroids.detach().float().cpu().contiguous().numpy())
        _, assignment = index.search(points.detach().float().cpu().contiguous().numpy(), 1)
        return torch.from_numpy(assignment[:, 0]).long().to(points.device)
    n, k = points.shape[0], centroids.shape[0]
    grouped = points.device.type == "cpu" and k >= GROUPED_ARGMIN_MIN_K
    # Rows padded to whole groups, which also aligns them: MKL writes a product with an odd row
    # length, such as SOP's K = 11,318, up to 1.4× slower (benchmarks/RESULTS_kmeans_speed.md).
    width = -(-k // ARGMIN_GROUP) * ARGMIN_GROUP if grouped else k
    scores = torch.empty(min(chunk_size, n), width, dtype=points.dtype, device=points.device)
    scores[:, k:] = float("inf")  # padding columns never win
    centroid_sq = centroids.pow(2).sum(1)
    assignment = torch.empty(n, dtype=torch.long, device=points.device)
    for start in range(0, n, chunk_size):
        rows = points[start : start + chunk_size]
        block = scores[: rows.shape[0]]
        torch.addmm(centroid_sq, rows, centroids.T, alpha=-2, out=block[:, :k])
        found = _grouped_argmin(block) if grouped else block.argmin(1)
        assignment[start : start + rows.shape[0]] = found
    return assignment


def _grouped_argmin(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmin(1)`` of a contiguous rows × (G·``ARGMIN_GROUP``) block, in two levels.

    On the CPU torch's ``argmin`` along a row is scalar code, ``amin`` is vectorised: the
    minimum of every group of ``ARGMIN_GROUP`` columns, the first group holding the row's
    minimum, then the first minimum inside that group; the same (first) index as ``argmin``.
    """
    groups = scores.view(scores.shape[0], -1, ARGMIN_GROUP)
    best_group = groups.amin(2).argmin(1)
    rows = torch.arange(scores.shape[0], device=scores.device)
    return best_group * ARGMIN_GROUP + groups[rows, best_group].argmin(1)


def _torch_kmeans(
    points: torch.Tensor, k: int, seed: int, chunk_size: int, progress: tqdm | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(K×D centroids after ``NITER`` Lloyd rounds from K distinct points drawn with ``seed``,
    the points' nearest-centroid ids when Lloyd reached its fixed point earlier, else None).

    Fixed point: an assignment equal to the one that gave the current centroids, with no
    cluster left empty, reproduces those centroids (bit for bit on the CPU; on a GPU up to the
    order of its atomic additions), so every further round would too; the loop stops there
    with the result the remaining rounds would give.
    """
    generator = torch.Generator().manual_seed(seed)
    start = torch.randperm(points.shape[0], generator=generator)[:k].to(points.device)
    centroids = points[start].clone()
    previous = None
    for iteration in range(NITER):
        assignment = nearest_centroid(points, centroids, chunk_size)
        if previous is not None and torch.equal(assignment, previous):
            if progress is not None:
                progress.update(NITER - iteration)
            return centroids, assignment
        counts = torch.bincount(assignment, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None].to(points.dtype)
        refilled = _split_for_empty(centroids, counts, generator)
        previous = None if refilled else assignment
        if progress is not None:
            progress.update(1)
    return centroids, None


def _split_for_empty(
    centroids: torch.Tensor, counts: torch.Tensor, generator: torch.Generator
) -> bool:
    """Give every empty cluster a perturbed copy of a populated centroid (in place); whether
    there was one.

    faiss's rule: the donor is drawn with probability proportional to its size minus one (a
    singleton is never split), and donor and copy move apart by the factors (1 ± 1/1024) per
    coordinate. Here the donors are distinct while enough clusters have two or more points
    (drawn without replacement, vectorised), where faiss halves a donor's size after each split
    and so may let a large cluster donate twice.
    """
    empty = (counts == 0).nonzero().squeeze(1)
    if empty.numel() == 0:
        return False
    weights = (counts - 1).clamp(min=0).double().cpu()
    if not bool((weights > 0).any()):  # only when K > N, which the evaluator never asks for
        weights = counts.double().cpu()
    distinct = int((weights > 0).sum()) >= empty.numel()
    donors = torch.multinomial(
        weights, empty.numel(), replacement=not distinct, generator=generator
    ).to(centroids.device)
    signs = torch.ones(centroids.shape[1], device=centroids.device)
    signs[1::2] = -1
    centroids[empty] = centroids[donors] * (1 + _SPLIT_EPS * signs)
    centroids[donors] = centroids[donors] * (1 - _SPLIT_EPS * signs)
    return True
