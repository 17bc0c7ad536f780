"""Exact Euclidean k-nearest-neighbour search of queries among a gallery, chunked over queries.

torch: scores ‖g‖² − 2 q·g for a chunk of queries against the whole gallery by one matrix
product, then ``torch.topk`` on the embeddings' device; memory O(Nq·k + chunk·Ng), never Nq×Ng.
The default chunk holds at most ``CHUNK_ELEMENTS`` scores (256 MiB of float32), whatever Ng.
(‖q‖² is the same for every gallery item of a row, so it cannot change the ranking.)
faiss: ``IndexFlatL2`` (exact), optional; used only when installed and selected; it blocks the
distance computation itself, our chunks of ``FAISS_CHUNK_ROWS`` queries only bound its k-wide
outputs. Either way the result is filled into one preallocated Nq×k tensor.

The query itself is excluded by its index in the gallery, never by dropping the first result,
which with duplicate embeddings need not be the query.
"""

from __future__ import annotations

import functools
import importlib.util
from types import ModuleType

import torch
from tqdm import tqdm

from utilities.errors import ConfigError

BACKENDS = ("auto", "torch", "faiss")
CHUNK_ELEMENTS = 2**26
FAISS_CHUNK_ROWS = 16384


def chunk_rows(chunk_size: int | None, width: int) -> int:
    """Rows scored at once: ``chunk_size``, or by default as many as fit ``CHUNK_ELEMENTS``."""
    if chunk_size is not None:
        return chunk_size
    return max(1, min(8192, CHUNK_ELEMENTS // max(width, 1)))


@functools.cache
def faiss_installed() -> bool:
    """Whether faiss can be imported (without importing it: that costs start-up time)."""
    return importlib.util.find_spec("faiss") is not None


@functools.cache
def faiss_module() -> ModuleType | None:
    """The faiss module when installed, else None; imported on the first call."""
    if not faiss_installed():
        return None
    import faiss

    return faiss


def use_faiss(backend: str, device: torch.device) -> bool:
    """Whether ``backend`` means faiss for embeddings on ``device``.

    "auto": faiss when installed and the embeddings are on the CPU (on a GPU torch keeps the work
    there); "faiss": always (ConfigError when not installed); "torch": never.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"evaluation backend: got {backend!r}, expected one of {BACKENDS}")
    if backend == "faiss" and not faiss_installed():
        raise ConfigError(
            "evaluation backend: got 'faiss', but faiss is not installed (pip install faiss-cpu, "
            "or use the 'torch' backend, which needs nothing more)"
        )
    if backend == "auto":
        return device.type == "cpu" and faiss_installed()
    return backend == "faiss"


def nearest_neighbours(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    self_position: torch.Tensor,
    k: int,
    *,
    backend: str = "auto",
    chunk_size: int | None = None,
    show_progress: bool | None = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions, distances): the k nearest gallery items of every query, nearest first.

    queries Nq×D, gallery Ng×D (float, same device); self_position (Nq,) long: each query's
    position in the gallery, -1 when it is not there; that item is never returned. Returns Nq×k
    long gallery positions on the queries' device, -1 where fewer than k other gallery items
    exist, and Nq×k float scores that order each row (torch: ‖g‖² − 2 q·g; faiss: squared
    distances; +inf where the position is -1).
    ``chunk_size``: queries scored at once (None: torch bounded by ``CHUNK_ELEMENTS``, faiss
    ``FAISS_CHUNK_ROWS``);
    ``show_progress``: True, False, or None (a bar only when stderr is a terminal).
    """
    k = min(k, gallery.shape[0])
    if k <= 0 or queries.shape[0] == 0:
        shape = (queries.shape[0], max(k, 0))
        return (
            torch.full(shape, -1, dtype=torch.long, device=queries.device),
            torch.full(shape, float("inf"), device=queries.device),
        )
    with tqdm(
        total=queries.shape[0],
        desc=f"nearest neighbours (k={k})",
        disable=None if show_progress is None else not show_progress,
        leave=False,
    ) as progress:
        if use_faiss(backend, queries.device):
            # faiss blocks the search itself; a chunk only bounds its k-wide outputs.
            rows = chunk_size or FAISS_CHUNK_ROWS
            return _faiss_search(queries, gallery, self_position, k, rows, progress)
        rows = chunk_rows(chunk_size, gallery.shape[0])
        return _torch_search(queries, gallery, self_position, k, rows, progress)


def _torch_search(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    self_position: torch.Tensor,
    k: int,
    chunk_size: int,
    progress: tqdm,
) -> tuple[torch.Tensor, torch.Tensor]:
    found = torch.empty(queries.shape[0], k, dtype=torch.long, device=queries.device)
    distances = torch.empty(queries.shape[0], k, device=queries.device)
    gallery_sq = gallery.pow(2).sum(1)[None, :]
    for start in range(0, queries.shape[0], chunk_size):
        stop = min(start + chunk_size, queries.shape[0])
        scores = torch.addmm(gallery_sq, queries[start:stop], gallery.T, alpha=-2)
        own = self_position[start:stop]
        rows = (own >= 0).nonzero().squeeze(1)
        scores[rows, own[rows]] = float("inf")
        nearest = scores.topk(k, dim=1, largest=False, sorted=True)
        found[start:stop], distances[start:stop] = nearest.indices, nearest.values
        progress.update(stop - start)
    # The query itself sits last (infinite score) only when k reaches the gallery size.
    found[found == self_position[:, None]] = -1
    return found, distances


def _faiss_search(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    self_position: torch.Tensor,
    k: int,
    chunk_size: int,
    progress: tqdm,
) -> tuple[torch.Tensor, torch.Tensor]:
    faiss = faiss_module()
    query_np = queries.detach().float().cpu().contiguous().numpy()
    gallery_np = gallery.detach().float().cpu().contiguous().numpy()
    index = faiss.IndexFlatL2(gallery_np.shape[1])
    index.add(gallery_np)
    own = self_position.cpu()
    # One extra result per row, so k remain after removing the query itself.
    search_k = min(k + int(bool((own >= 0).any())), gallery_np.shape[0])
    found = torch.empty(query_np.shape[0], k, dtype=torch.long)
    distances = torch.empty(query_np.shape[0], k)
    for start in range(0, query_np.shape[0], chunk_size):
        stop = min(start + chunk_size, query_np.shape[0])
        chunk_distances, chunk = map(torch.from_numpy, index.search(query_np[start:stop], search_k))
        found[start:stop], distances[start:stop] = _drop_self(
            chunk, chunk_distances, own[start:stop], k
        )
        progress.update(stop - start)
    distances[found < 0] = float("inf")
    return found.to(queries.device), distances.to(queries.device)


def _drop_self(
    found: torch.Tensor, distances: torch.Tensor, own: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nq×k (positions, distances): the rows of ``found`` (Nq×k or Nq×(k+1)) and of their
    ``distances`` without the entry equal to ``own``.

    A row that does not contain its query loses its last (extra) column instead; -1 marks
    missing results. One gather, O(Nq·k): no sort.
    """
    drop = found == own[:, None]
    column = torch.where(drop.any(1), drop.to(torch.int8).argmax(1), found.shape[1] - 1)
    take = torch.arange(k, device=found.device)[None, :]
    take = (take + (take >= column[:, None]).long()).clamp(max=found.shape[1] - 1)
    kept = found.gather(1, take)
    if found.shape[1] == k:  # no extra column: a dropped query leaves a hole at the end
        kept[:, -1] = torch.where(drop.any(1), -1, kept[:, -1])
    return kept, distances.gather(1, take)
