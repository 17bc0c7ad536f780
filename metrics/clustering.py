"""Seeded k-means in the embedding space; every point's cluster id is its nearest centroid.

Settings follow the reference's faiss call (spec revisiting_dml.md §7.1):
``faiss.Kmeans(d, K, niter=20, seed, min_points_per_centroid=1, max_points_per_centroid=1e9)``.
Without faiss (or on a GPU, or with backend "torch") a torch Lloyd iteration does the same job:
K distinct data points drawn with the seed as initial centroids, then 20 rounds of
assign-to-nearest (chunked, memory O(chunk·K)) and centroid = mean of its points. A centroid
left without points is replaced by a slightly perturbed copy of a centroid drawn with
probability proportional to cluster size, which is then perturbed the other way (faiss's rule).
"""

from __future__ import annotations

import torch

from metrics.knn import faiss_module, use_faiss

NITER = 20
_SPLIT_EPS = 1.0 / 1024


def kmeans(
    embeddings: torch.Tensor,
    k: int,
    *,
    seed: int = 0,
    backend: str = "auto",
    chunk_size: int = 4096,
) -> torch.Tensor:
    """Cluster id in ``0..k-1`` of every row of ``embeddings`` (N×D), (N,) long, same device."""
    if use_faiss(backend, embeddings.device):
        return _faiss_kmeans(embeddings, k, seed)
    return _torch_kmeans(embeddings.float(), k, seed, chunk_size)


def _faiss_kmeans(embeddings: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    faiss = faiss_module()
    points = embeddings.detach().float().cpu().contiguous().numpy()
    clustering = faiss.Kmeans(
        points.shape[1],
        k,
        niter=NITER,
        seed=seed,
        min_points_per_centroid=1,
        max_points_per_centroid=10**9,
        verbose=False,
    )
    clustering.train(points)
    _, assignment = clustering.index.search(points, 1)
    return torch.from_numpy(assignment[:, 0]).long().to(embeddings.device)


def nearest_centroid(
    points: torch.Tensor, centroids: torch.Tensor, chunk_size: int
) -> torch.Tensor:
    """Index of the nearest centroid (Euclidean) of every point, (N,) long, chunked over points."""
    centroid_sq = centroids.pow(2).sum(1)[None, :]
    return torch.cat(
        [
            torch.addmm(centroid_sq, chunk, centroids.T, alpha=-2).argmin(1)
            for chunk in points.split(chunk_size)
        ]
    )


def _torch_kmeans(points: torch.Tensor, k: int, seed: int, chunk_size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    start = torch.randperm(points.shape[0], generator=generator)[:k].to(points.device)
    centroids = points[start].clone()
    for _ in range(NITER):
        assignment = nearest_centroid(points, centroids, chunk_size)
        counts = torch.bincount(assignment, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None].to(points.dtype)
        _split_for_empty(centroids, counts, generator)
    return nearest_centroid(points, centroids, chunk_size)


def _split_for_empty(
    centroids: torch.Tensor, counts: torch.Tensor, generator: torch.Generator
) -> None:
    """Give every empty cluster a perturbed copy of a populated centroid (in place)."""
    empty = (counts == 0).nonzero().squeeze(1)
    if empty.numel() == 0:
        return
    donors = torch.multinomial(
        counts.double().cpu(), empty.numel(), replacement=True, generator=generator
    ).to(centroids.device)
    signs = torch.ones(centroids.shape[1], device=centroids.device)
    signs[1::2] = -1
    centroids[empty] = centroids[donors] * (1 + _SPLIT_EPS * signs)
    centroids[donors] = centroids[donors] * (1 - _SPLIT_EPS * signs)
