"""The rank of every relevant gallery item of every query: what every neighbour metric reads.

Tie rule (the same on every path, backend and device): at equal distance from the query, the
items that do not share its label rank first. Every metric is then its textbook formula on
that one ranking, a lower bound over all tie orders: a collapsed embedding (every distance
equal) never scores a hit it did not earn. With d the Euclidean distance (in the cosine space,
that of the L2-normalised features), q itself left out of its gallery, for the relevant items
p_1, …, p_R of q (gallery items sharing its label) sorted by distance:

    rank_q(p_j) = #{g ≠ q : d(q, g) ≤ d(q, p_j)} − #{i > j : d(q, p_i) = d(q, p_j)},
    hits_q(p_j) = j,

that is p_j's 1-based position in the ranking and the number of relevant items up to it.

Two paths fill the same :class:`RelevantRanks`:
* :func:`exact_ranks`: one chunked pass over the distance rows. Each query's relevant items
  give its thresholds (their distances, read from the same row of the same matrix product, so
  a tie is a tie bit for bit); every gallery item within the worst threshold is a candidate,
  and one sorted search + histogram per chunk counts how many candidates lie within each
  threshold. Exact at every depth; memory O(chunk·Ng + Nq·M), M = the largest class in the
  gallery.
* :func:`ranks_from_neighbours`: from a nearest-neighbour search one deeper than needed (with
  its distances). Exact for every rank up to the depth searched, ``NO_RANK`` beyond; a row whose
  last tie group holds a relevant item and may go on past the search is left undetermined (the
  evaluator recomputes those rows on the exact path).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from metrics.knn import chunk_rows

# The rank given to an absent relevant item (padding) or to one ranked beyond the depth computed.
NO_RANK = 2**62
# ``RelevantRanks.depth`` when every rank is exact.
EVERY_RANK = NO_RANK - 1
# Costs measured on one CPU thread (chunks of 279 × 30,000 scores, 14 thresholds): counting one
# candidate (a gallery item within its row's worst threshold) by the sparse route, COUNT_NS;
# counting a whole row by one batched search, FULL_ROW_NS per score. A row with more than
# FULL_ROW_FRACTION of its scores as candidates is counted whole, or, when the metrics read
# only k deep, ranked by a top-k of k + 1 (1.6 ns per score at k = 10, 10 ns at k = 1000).
COUNT_NS, FULL_ROW_NS = 107.0, 20.0
FULL_ROW_FRACTION = FULL_ROW_NS / COUNT_NS
# A row is counted to tell whether it is dense only when this share of its blocks holds a
# candidate (uniformly spread candidates: 90 % of 64-column blocks at 3.5 % of the scores).
DENSE_BLOCKS = 0.9
# Gallery columns per block of the candidate search (a block beyond every threshold is skipped).
BLOCK = 64
# Queries converted at once from an Nq×K neighbour list (bounds temporary memory).
ROW_BLOCK = 8192


@dataclass
class RelevantRanks:
    """The ranks of every query's relevant gallery items, Nq×M each, ascending along a row.

    ``ranks`` (long): rank_q(p) of the tie rule above, ``NO_RANK`` for padding and for items
    ranked beyond ``depth``; ``hits`` (long): hits_q(p), 0 where ``ranks`` is ``NO_RANK``.
    ``depth``: every rank up to it is exact (``EVERY_RANK`` on the exact path). ``path``:
    "exact" or "topk", the path that computed them.
    """

    ranks: torch.Tensor
    hits: torch.Tensor
    depth: int
    path: str

    def first(self) -> torch.Tensor:
        """(Nq,) long: the rank of each query's first relevant item, ``NO_RANK`` when none."""
        if self.ranks.shape[1] == 0:
            return torch.full(self.ranks.shape[:1], NO_RANK, device=self.ranks.device)
        return self.ranks[:, 0]

    def within(self, cutoff: torch.Tensor) -> torch.Tensor:
        """Nq×M bool: relevant items ranked within each query's ``cutoff`` ((Nq,) long)."""
        self._check_depth(cutoff)
        return self.ranks <= cutoff[:, None]

    def retrieved(self, cutoff: torch.Tensor) -> torch.Tensor:
        """(Nq,) long: how many relevant items rank within each query's ``cutoff``."""
        return self.within(cutoff).sum(1)

    def average_precision(self, cutoff: torch.Tensor, divisor: torch.Tensor) -> torch.Tensor:
        """(Nq,) float64: AP_q = (1/divisor_q) · Σ_{p: rank_q(p) ≤ cutoff_q} hits_q(p)/rank_q(p).

        On tie-free data Σ_{i ≤ cutoff} P@i · rel_i with P@i = (1/i) Σ_{j≤i} rel_j.
        """
        kept = self.within(cutoff)
        precision = self.hits.double() / self.ranks.double()
        return (precision * kept).sum(1) / divisor.double()

    def _check_depth(self, cutoff: torch.Tensor) -> None:
        if cutoff.numel() and int(cutoff.max()) > self.depth:
            raise RuntimeError(
                f"a cut-off of {int(cutoff.max())} reads ranks beyond the {self.depth} computed"
            )


def relevant_positions(
    query_labels: torch.Tensor, gallery_labels: torch.Tensor, self_position: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Nq×M long, Nq×M bool): gallery positions of every query's relevant items and which
    entries are real (M = the largest class in the gallery; the query itself is not real)."""
    n_gallery = gallery_labels.numel()
    device = query_labels.device
    if n_gallery == 0 or query_labels.numel() == 0:
        empty = torch.zeros(query_labels.numel(), 0, dtype=torch.long, device=device)
        return empty, empty.bool()
    order = torch.argsort(gallery_labels, stable=True)
    classes, counts = torch.unique(gallery_labels, return_counts=True)
    starts = counts.cumsum(0) - counts
    slot = torch.searchsorted(classes, query_labels).clamp(max=classes.numel() - 1)
    sizes = torch.where(classes[slot] == query_labels, counts[slot], 0)
    width = torch.arange(int(sizes.max()), device=device)
    positions = order[(starts[slot][:, None] + width).clamp(max=n_gallery - 1)]
    real = (width < sizes[:, None]) & (positions != self_position[:, None])
    return positions, real


def exact_ranks(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    self_position: torch.Tensor,
    relevant: tuple[torch.Tensor, torch.Tensor],
    *,
    labels: tuple[torch.Tensor, torch.Tensor] | None = None,
    depth: int | None = None,
    chunk_size: int | None = None,
    show_progress: bool | None = False,
) -> RelevantRanks:
    """The :class:`RelevantRanks` of every query (Nq×D) among the gallery (Ng×D), one chunked
    pass.

    ``self_position`` (Nq,): each query's gallery position, -1 when it is not in the gallery;
    ``relevant``: :func:`relevant_positions`. Scores are ‖g‖² − 2 q·g (the per-row constant
    ‖q‖² cannot change a row's order), ``chunk_size`` queries at once on the queries' device.
    Every rank is counted, a query with many candidates (more than ``FULL_ROW_FRACTION`` of
    its row within its worst relevant item: a poorly trained embedding, a large class) by one
    batched search of its whole row. With ``depth`` (and ``labels``, the query and gallery
    labels) only ranks up to ``depth`` must be exact, and such a query is ranked instead by the
    ``depth`` + 1 smallest scores of its row of the same matrix product, as on the top-k path
    (counted only when its last tie group is undetermined).
    """
    positions, real = relevant
    n_query, width = positions.shape
    device = queries.device
    ranks = torch.full((n_query, width), NO_RANK, dtype=torch.long, device=device)
    hits = torch.zeros((n_query, width), dtype=torch.long, device=device)
    n_gallery = gallery.shape[0]
    if width == 0:
        return RelevantRanks(ranks, hits, EVERY_RANK, "exact")
    search = depth is not None and labels is not None and depth + 1 < n_gallery - 1
    dense_limit = FULL_ROW_FRACTION * n_gallery
    rows = chunk_rows(chunk_size, n_gallery)
    gallery_sq = gallery.pow(2).sum(1)[None, :]
    # Reused by every chunk: fresh memory for each chunk's scores would cost page faults.
    score_rows = torch.empty(rows, n_gallery, dtype=queries.dtype, device=device)
    searched = 0
    with tqdm(
        total=n_query,
        desc="exact ranks",
        disable=None if show_progress is None else not show_progress,
        leave=False,
    ) as progress:
        for start in range(0, n_query, rows):
            stop = min(start + rows, n_query)
            scores = torch.addmm(
                gallery_sq, queries[start:stop], gallery.T, alpha=-2, out=score_rows[: stop - start]
            )
            own = self_position[start:stop]
            inside = (own >= 0).nonzero().squeeze(1)
            scores[inside, own[inside]] = float("inf")
            thresholds, n_real, worst = _thresholds(scores, positions[start:stop], real[start:stop])
            row, values, dense = _candidates(scores, worst, dense_limit)
            ranks[start:stop], hits[start:stop] = _count_within(thresholds, n_real, row, values)
            at = dense.nonzero().squeeze(1)
            if at.numel():
                if search:
                    assert labels is not None and depth is not None
                    searched += at.numel()
                    chunk_labels = (labels[0][start:stop][at], labels[1])
                    dense_ranks = _top_k_rows(
                        scores[at], thresholds[at], n_real[at], chunk_labels, depth
                    )
                else:
                    dense_ranks = _count_full_rows(scores[at], thresholds[at], n_real[at])
                ranks[start + at], hits[start + at] = dense_ranks
            progress.update(stop - start)
    if searched:
        return RelevantRanks(ranks, hits, depth, f"exact, top-k for {searched} of {n_query}")
    return RelevantRanks(ranks, hits, EVERY_RANK, "exact")


def _top_k_rows(
    scores: torch.Tensor,
    thresholds: torch.Tensor,
    n_real: torch.Tensor,
    labels: tuple[torch.Tensor, torch.Tensor],
    depth: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ranks, hits), r×M each, of score rows (r×Ng) from their ``depth`` + 1 smallest scores
    (``labels``: the rows' query labels, the gallery labels), exact up to ``depth``; a row whose
    last tie group is undetermined is counted whole."""
    nearest = scores.topk(depth + 1, dim=1, largest=False, sorted=True)
    found, undetermined = ranks_from_neighbours(
        nearest.indices,
        nearest.values,
        labels[1][nearest.indices] == labels[0][:, None],
        torch.ones_like(n_real, dtype=torch.bool),
        n_real,
    )
    ranks = torch.full_like(thresholds, NO_RANK, dtype=torch.long)
    hits = torch.zeros_like(ranks)
    columns = found.ranks.shape[1]
    ranks[:, :columns], hits[:, :columns] = found.ranks, found.hits
    if undetermined.numel():  # a tie group with relevant items runs past the search
        ranks[undetermined], hits[undetermined] = _count_full_rows(
            scores[undetermined], thresholds[undetermined], n_real[undetermined]
        )
    return ranks, hits


def _thresholds(
    scores: torch.Tensor, positions: torch.Tensor, real: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(thresholds c×M ascending, real ones first; (c,) how many are real; c×1 the largest).

    A row's thresholds are its relevant items' own scores; + 0.0 makes -0.0 equal to 0.0.
    """
    thresholds = torch.where(real, scores.gather(1, positions) + 0.0, float("inf")).sort(1).values
    n_real = real.sum(1)
    worst = thresholds.gather(1, (n_real - 1).clamp(min=0)[:, None])
    return thresholds, n_real, torch.where(n_real[:, None] > 0, worst, float("-inf"))


def _candidates(
    scores: torch.Tensor, worst: torch.Tensor, dense_limit: float | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, score) of every entry of ``scores`` (c×Ng) within its row's ``worst`` (c×1), and
    (c,) bool: the rows with more than ``dense_limit`` such entries, whose entries are left out
    (none without a limit).

    Blocks of ``BLOCK`` columns whose minimum is beyond the worst threshold are skipped whole
    (one min-reduction over the chunk), so finding few candidates costs about one read of the
    scores; only a row hitting most of its blocks is counted to tell whether it is dense.
    """
    n_rows, n_columns = scores.shape
    whole = n_columns - n_columns % BLOCK
    blocks = scores[:, :whole].unflatten(1, (-1, BLOCK))
    hit = blocks.amin(2) <= worst  # c × (whole / BLOCK)
    dense = torch.zeros(n_rows, dtype=torch.bool, device=scores.device)
    if dense_limit is not None:
        maybe = (hit.sum(1) >= DENSE_BLOCKS * hit.shape[1]).nonzero().squeeze(1)
        if maybe.numel() * 2 > n_rows:  # most rows: count them all, without copying
            dense = (scores <= worst).sum(1) > dense_limit
        else:
            dense[maybe] = (scores[maybe] <= worst[maybe]).sum(1) > dense_limit
        hit &= ~dense[:, None]
    row, block = hit.nonzero(as_tuple=True)
    found = blocks[row, block]  # (blocks hit)×BLOCK
    kept = found <= worst[row]
    rows, values = [row[:, None].expand_as(found)[kept]], [found[kept]]
    if whole < n_columns:
        tail = scores[:, whole:]
        row, column = (tail <= worst.masked_fill(dense[:, None], float("-inf"))).nonzero(
            as_tuple=True
        )
        rows.append(row)
        values.append(tail[row, column])
    return torch.cat(rows), torch.cat(values) + 0.0, dense  # + 0.0: -0.0 equals 0.0 as a key


def _count_within(
    thresholds: torch.Tensor, n_real: torch.Tensor, row: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ranks, hits), c×M each, of one chunk from its thresholds (c×M, ascending, real ones
    first; ``n_real`` of them) and its candidates (``row``, ``values``: every score within its
    row's worst threshold)."""
    # Thresholds of row r strictly below each candidate of row r: one search over row-tagged keys.
    keys = _row_keys(thresholds, torch.arange(thresholds.shape[0], device=row.device)[:, None])
    below = torch.searchsorted(keys.view(-1), _row_keys(values, row))
    return _ranks_from_buckets(thresholds, n_real, below - row * thresholds.shape[1], row)


def _count_full_rows(
    scores: torch.Tensor, thresholds: torch.Tensor, n_real: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_count_within` for rows where most scores are candidates: every score of each row
    (r×Ng) searched among the row's thresholds at once."""
    below = torch.searchsorted(thresholds, scores + 0.0)  # + 0.0: -0.0 equals 0.0
    row = torch.arange(scores.shape[0], device=scores.device)[:, None].expand_as(below)
    return _ranks_from_buckets(thresholds, n_real, below.reshape(-1), row.reshape(-1))


def _ranks_from_buckets(
    thresholds: torch.Tensor, n_real: torch.Tensor, below: torch.Tensor, row: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ranks, hits), c×M each, from each candidate's row and the number of its row's thresholds
    strictly below it (a candidate counts toward every threshold from that one on)."""
    n_rows, width = thresholds.shape
    histogram = torch.bincount(row * (width + 1) + below, minlength=n_rows * (width + 1))
    within = histogram.view(n_rows, width + 1).cumsum(1)[:, :width]
    # A relevant item tied with later ones ranks before them: subtract the later ties.
    column = torch.arange(width, device=thresholds.device)[None, :]
    later_ties = torch.searchsorted(thresholds, thresholds, right=True) - 1 - column
    is_real = column < n_real[:, None]
    return torch.where(is_real, within - later_ties, NO_RANK), torch.where(is_real, column + 1, 0)


def _row_keys(values: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered by (row, value) for float32 ``values`` (no NaN) and rows < 2³¹."""
    bits = values.contiguous().view(torch.int32).long()
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits) + 2**31  # monotone, in [0, 2³²)
    return (row << 32) | ordered


def ranks_from_neighbours(
    found: torch.Tensor,
    distances: torch.Tensor,
    relevant: torch.Tensor,
    truncated: torch.Tensor,
    relevant_counts: torch.Tensor,
) -> tuple[RelevantRanks, torch.Tensor]:
    """(:class:`RelevantRanks`, undetermined rows) from a nearest-neighbour search.

    ``found`` Nq×K gallery items nearest first (-1: none), ``distances`` their distances
    (anything where ``found`` is -1), ``relevant`` Nq×K bool (the item shares the query's label),
    ``truncated`` (Nq,) bool: the gallery holds more items for that query than the K returned;
    ``relevant_counts`` (Nq,): R_q. The ranks are exact to depth K − 1 (to any depth when no row
    is truncated), except in the returned rows (long indices): a truncated row whose last tie
    group holds a relevant item, which may rank anywhere in that group.
    """
    n_query, depth = found.shape
    width = min(int(relevant_counts.max()) if n_query else 0, depth)
    device = found.device
    ranks = torch.full((n_query, width), NO_RANK, dtype=torch.long, device=device)
    hits = torch.zeros((n_query, width), dtype=torch.long, device=device)
    undetermined = []
    column = torch.arange(depth, device=device)
    for start in range(0, n_query, ROW_BLOCK):
        stop = min(start + ROW_BLOCK, n_query)
        rel = relevant[start:stop] & (found[start:stop] >= 0)
        ends_group = torch.ones_like(rel)
        ends_group[:, :-1] = distances[start:stop, :-1] != distances[start:stop, 1:]
        ends_group[:, -1] = ~truncated[start:stop]
        # end[i]: the last column of item i's tie group; ``depth`` when it runs past the search.
        end = torch.where(ends_group, column, depth).flip(1).cummin(1).values.flip(1)
        taken = rel.cumsum(1)  # relevant items up to each column
        open_end = end == depth
        undetermined.append(start + (rel & open_end).any(1).nonzero().squeeze(1))
        row, at = (rel & ~open_end).nonzero(as_tuple=True)
        slot = taken[row, at] - 1  # j − 1 for p_j
        keep = slot < width
        row, at, slot = row[keep], at[keep], slot[keep]
        # p_j ranks after its group's other items, before the group's later relevant ones.
        last_relevant = taken[row, end[row, at]] - 1
        ranks[start + row, slot] = end[row, at] + 1 - (last_relevant - slot)
        hits[start + row, slot] = slot + 1
    exact_to = depth - 1 if bool(truncated.any()) else EVERY_RANK
    rows = torch.cat(undetermined) if undetermined else column.new_zeros(0)
    return RelevantRanks(ranks, hits, exact_to, "topk"), rows
