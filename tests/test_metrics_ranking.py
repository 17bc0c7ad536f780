"""Every neighbour-based metric against slow per-query references, on random and awkward data.

The references rank each query's gallery by a full sort of exactly computed distances (or cosine
similarities), then apply each metric's formula query by query; nothing is shared with the
engine but the definitions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import metrics
from metrics import knn, relevant_ranks
from metrics.knn import faiss_module

needs_faiss = pytest.mark.skipif(faiss_module() is None, reason="faiss not installed")
# The exact path, and the top-k path with each search backend.
BACKENDS = ["exact", "torch", pytest.param("faiss", marks=needs_faiss)]


def evaluator(keys, backend, **kwargs):
    """The Evaluator of ``keys`` on a path of BACKENDS: "exact", or top-k with that backend."""
    if backend == "exact":
        return metrics.Evaluator(keys, backend="torch", ranking="exact", **kwargs)
    return metrics.Evaluator(keys, backend=backend, ranking="topk", **kwargs)


# ---------------------------------------------------------------- slow references
def rankings(x, y, query=None, gallery=None, cosine=False, optimistic=None):
    """Per query: (relevance over its full ranking, R_q). Ties by index, or relevant first
    (``optimistic=True``) / last (``False``)."""
    n = len(y)
    query = np.ones(n, bool) if query is None else query
    gallery = np.ones(n, bool) if gallery is None else gallery
    x = x.astype(np.float64)
    rows = []
    for q in np.flatnonzero(query):
        others = np.flatnonzero(gallery & (np.arange(n) != q))
        if cosine:
            norms = np.linalg.norm(x[others], axis=1) * np.linalg.norm(x[q])
            score = -(x[others] @ x[q]) / np.maximum(norms, 1e-12)
        else:
            score = ((x[others] - x[q]) ** 2).sum(1)
        rel = y[others] == y[q] if len(others) else np.zeros(0, bool)
        tie = np.zeros(len(others)) if optimistic is None else (~rel if optimistic else rel)
        order = np.lexsort((np.arange(len(others)), tie, score))
        rows.append((rel[order], int(rel.sum())))
    return rows


def recall(rows, k):
    return float(np.mean([rel[:k].any() for rel, _ in rows])) if rows else float("nan")


def mean(values):
    return float(np.mean(values)) if values else float("nan")


def precision_at_1(rows):
    return mean([float(rel[0]) for rel, r in rows if r > 0])


def r_precision(rows):
    return mean([rel[:r].sum() / r for rel, r in rows if r > 0])


def average_precision(rel, cutoff, divisor):
    hits, total = 0, 0.0
    for i in range(min(cutoff, len(rel))):
        if rel[i]:
            hits += 1
            total += hits / (i + 1)
    return total / divisor


def map_r(rows):
    return mean([average_precision(rel, r, r) for rel, r in rows if r > 0])


def map_revisit(rows, cutoff):
    """The reference's mAP: divisor = class size counting the query, mean over all queries."""
    return mean([average_precision(rel, cutoff(r), r + 1) for rel, r in rows])


def map_retrieved(rows, depth):
    """DADA's truncated MAP: AP over the top ``depth`` divided by the hits found there."""
    scores = []
    for rel, _ in rows:
        hits = int(rel[:depth].sum())
        scores.append(average_precision(rel, depth, hits) if hits else 0.0)
    return mean(scores)


def mrr(rows, depth=None):
    depth = max((r for _, r in rows), default=0) if depth is None else depth
    scores = []
    for rel, r in rows:
        if r == 0:
            continue
        hit = np.flatnonzero(rel[:depth])
        scores.append(1.0 / (hit[0] + 1) if hit.size else 0.0)
    return mean(scores)


def slow_values(keys, x, y, query=None, gallery=None, optimistic=None):
    """{key: value} from the slow references, for every neighbour-based key."""
    spaces = {
        cosine: rankings(x, y, query, gallery, cosine, optimistic)
        for cosine in (False, True)
        if any(key.startswith("c_") == cosine for key in keys)
    }
    n = len(y)
    out = {}
    for key in keys:
        name, _, arg = key.partition("@")
        rows = spaces[name.startswith("c_")]
        base = name.removeprefix("c_")
        if base in ("e_recall", "recall"):
            out[key] = recall(rows, int(arg))
        elif base == "precision_at_1":
            out[key] = precision_at_1(rows)
        elif base == "r_precision":
            out[key] = r_precision(rows)
        elif base == "mAP_R":
            out[key] = map_r(rows)
        elif base == "mrr":
            out[key] = mrr(rows, int(arg) if arg else None)
        elif base in ("mAP_c", "mAP_R_dada"):
            out[key] = map_revisit(rows, lambda r: r + 1)
        elif base == "mAP_dada":
            out[key] = map_retrieved(rows, int(arg) if arg else 50)
        elif base == "mAP_1000":
            out[key] = map_revisit(rows, lambda r: 1000)
        elif base == "mAP_lim":
            out[key] = map_revisit(rows, lambda r: min(1023, n))
        elif base == "mAP":
            out[key] = mean([average_precision(rel, len(rel), r) for rel, r in rows if r > 0])
        elif base == "mAP_robrank":
            depth = int(arg) if arg else 10
            out[key] = mean([average_precision(rel, depth, depth) for rel, _ in rows])
        else:
            raise KeyError(key)
    return out


KEYS = [
    "e_recall@1",
    "e_recall@3",
    "e_recall@10",
    "c_recall@1",
    "c_recall@4",
    "precision_at_1",
    "r_precision",
    "mAP_R",
    "mrr",
    "mrr@2",
    "mAP_c",
    "mAP_1000",
    "mAP_lim",
    "c_mAP_c",
    "c_mAP_1000",
    "c_mAP_lim",
    "mAP_R_dada",
    "mAP_dada",
    "mAP_dada@4",
    "mAP",
    "mAP_robrank",
    "mAP_robrank@3",
]


def assert_values(got, expected, abs_tol=1e-9):
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert isinstance(got[key], float), key
        if np.isnan(value):
            assert np.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, abs=abs_tol), key


def random_data(n=60, d=5, classes=8, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.2, 3.0, size=(n, 1)) * scale  # varied norms
    return x.astype(np.float32), rng.integers(0, classes, n)


# ---------------------------------------------------------------- coverage
def test_every_neighbour_metric_has_a_slow_reference():
    neighbour_metrics = {
        key
        for key, cls in metrics.METRICS.items()
        if cls.requires & {"neighbours", "neighbours_cosine"}
    }
    assert neighbour_metrics <= {key.partition("@")[0] for key in KEYS}


# ---------------------------------------------------------------- random and awkward cases
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_data_matches_slow_reference(backend, seed):
    x, y = random_data(seed=seed, classes=3 + 3 * seed)
    got = evaluator(KEYS, backend, chunk_size=17).compute(x, y)
    assert_values(got, slow_values(KEYS, x, y))


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_follow_the_tie_rule(backend):
    """Exact ties (small integers): every Euclidean metric is its value on the ranking with
    the irrelevant items first at equal distance; the cosine ones (inexact after normalising)
    lie between the best and the worst tie order."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, size=(50, 3)).astype(np.float32)  # exact distances, many ties
    x[x.sum(1) == 0] = 1.0  # no zero vector: cosine is defined everywhere
    y = rng.integers(0, 4, 50)
    got = evaluator(KEYS, backend).compute(x, y)
    best = slow_values(KEYS, x, y, optimistic=True)
    worst = slow_values(KEYS, x, y, optimistic=False)
    assert sum(best[k] > worst[k] + 1e-9 for k in KEYS) >= 10  # the ties really matter
    for key in KEYS:
        if key.startswith("c_"):
            assert worst[key] - 1e-9 <= got[key] <= best[key] + 1e-9, key
        else:
            assert got[key] == pytest.approx(worst[key], abs=1e-12), key


@pytest.mark.parametrize("backend", BACKENDS)
def test_duplicate_embeddings(backend):
    x, y = random_data(n=25, classes=6, seed=5)
    x, y = np.concatenate([x, x, x[:5]]), np.concatenate([y, (y + 1) % 6, y[:5]])
    got = evaluator(KEYS, backend).compute(x, y)
    best = slow_values(KEYS, x, y, optimistic=True)
    worst = slow_values(KEYS, x, y, optimistic=False)
    for key in KEYS:
        assert worst[key] - 1e-9 <= got[key] <= best[key] + 1e-9, key
    if backend != "exact":
        inputs = evaluator(KEYS, backend).prepare(x, y)
        own = torch.arange(len(y))[:, None]
        assert not (inputs.neighbours == own).any()
        assert not (inputs.cosine_neighbours == own).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_singleton_classes(backend):
    x, y = random_data(n=40, classes=5, seed=6)
    y[:6] = 100 + np.arange(6)  # six lone queries: misses for R@k, left out of MAP@R/P@1/RP/MRR
    got = evaluator(KEYS, backend).compute(x, y)
    assert_values(got, slow_values(KEYS, x, y))
    assert got["precision_at_1"] != got["e_recall@1"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_singletons(backend):
    x, _ = random_data(n=6, seed=7)
    got = evaluator(KEYS, backend).compute(x, np.arange(6))
    assert_values(got, slow_values(KEYS, x, np.arange(6)))
    assert np.isnan(got["mAP_R"]) and np.isnan(got["precision_at_1"]) and got["mAP_c"] == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_class(backend):
    x, _ = random_data(n=12, seed=8)
    y = np.zeros(12, int)
    got = evaluator(KEYS, backend).compute(x, y)
    assert_values(got, slow_values(KEYS, x, y))
    assert got["mAP_R"] == 1.0 and got["mAP_c"] == pytest.approx(11 / 12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("overlap", [False, True])
def test_query_gallery_with_classes_absent_from_gallery(backend, overlap):
    x, y = random_data(n=80, classes=9, seed=9)
    rng = np.random.default_rng(9)
    query = rng.random(80) < 0.4
    gallery = ~query | (overlap & (rng.random(80) < 0.5))
    gallery &= y != 8  # class 8 only among queries: R_q = 0
    query[y == 8] = True
    got = evaluator(KEYS, backend).compute(x, y, query=query, gallery=gallery)
    assert_values(got, slow_values(KEYS, x, y, query, gallery))


def test_map_lim_and_map_1000_cut_off_deep_rankings():
    x, y = random_data(n=1040, d=4, classes=2, seed=10)  # classes of ~520: AP runs past 1000
    keys = ["mAP_1000", "mAP_lim"]
    got = metrics.Evaluator(keys, backend="torch").compute(x, y)
    expected = slow_values(keys, x, y)
    assert_values(got, expected, abs_tol=1e-6)  # float32 search vs float64 reference: near-ties
    assert got["mAP_lim"] > got["mAP_1000"]  # 1023 neighbours see more hits than 1000


# ---------------------------------------------------------------- the search engine
def test_cosine_space_ignores_the_norm():
    x, y = random_data(n=50, seed=11)
    scaled = x * np.random.default_rng(0).uniform(0.1, 10, size=(50, 1)).astype(np.float32)
    keys = ["c_recall@1", "c_recall@4", "c_mAP_c", "e_recall@1"]
    a = metrics.Evaluator(keys, backend="torch").compute(x, y)
    b = metrics.Evaluator(keys, backend="torch").compute(scaled, y)
    assert [a[k] for k in keys[:3]] == pytest.approx([b[k] for k in keys[:3]])
    assert a["e_recall@1"] != b["e_recall@1"]


@needs_faiss
@pytest.mark.parametrize("cosine", [False, True])
def test_torch_and_faiss_neighbours_agree(cosine):
    x, y = random_data(n=90, d=6, seed=12)
    query, gallery = np.arange(90) % 3 != 0, np.arange(90) % 2 == 0
    key = "c_recall@7" if cosine else "e_recall@7"
    found = [
        metrics.Evaluator([key], backend=backend, ranking="topk")
        .prepare(x, y, query=query, gallery=gallery)
        .ranking("cosine" if cosine else "euclidean")[0]
        for backend in ("torch", "faiss")
    ]
    assert torch.equal(found[0], found[1])  # random floats: no ties


def test_default_chunks_bound_the_score_matrix(monkeypatch):
    x, y = random_data(n=70, seed=13)
    widths = []
    real_topk = torch.Tensor.topk

    def recording_topk(scores, *args, **kwargs):
        widths.append(tuple(scores.shape))
        return real_topk(scores, *args, **kwargs)

    monkeypatch.setattr(knn, "CHUNK_ELEMENTS", 70 * 9)
    monkeypatch.setattr(torch.Tensor, "topk", recording_topk)
    got = metrics.Evaluator(KEYS, backend="torch", ranking="topk").compute(x, y)
    monkeypatch.undo()
    assert widths and all(rows * cols <= 70 * 9 for rows, cols in widths)
    assert_values(got, slow_values(KEYS, x, y))


def test_search_depth_is_the_largest_any_metric_needs():
    x, y = random_data(n=60, classes=2, seed=14)  # R_q up to ~35 for MAP@R / mAP_c
    inputs = metrics.Evaluator(["e_recall@4", "mAP_R", "c_recall@2"], ranking="topk").prepare(x, y)
    assert inputs.neighbours.shape[1] == int(np.bincount(y).max()) - 1
    assert inputs.cosine_neighbours.shape[1] == 2
    inputs = metrics.Evaluator(["mAP_c", "e_recall@1"], ranking="topk").prepare(x, y)
    assert inputs.neighbours.shape[1] == int(np.bincount(y).max())
    assert inputs.cosine_neighbours is None and inputs.cluster_ids is None


def test_drop_self_keeps_the_ranking():
    found = torch.tensor([[3, 0, 5, 7], [1, 2, 4, 6], [9, 8, 6, 0], [2, 5, 1, 3]])
    own = torch.tensor([0, -1, 0, 3])
    distances = found.float() / 10
    got, got_distances = knn._drop_self(found, distances, own, 3)
    assert got.tolist() == [[3, 5, 7], [1, 2, 4], [9, 8, 6], [2, 5, 1]]
    assert torch.equal(got_distances, got.float() / 10)
    exact, _ = knn._drop_self(found[:, :3], distances[:, :3], own, 3)  # a hole at the end
    assert exact.tolist() == [[3, 5, -1], [1, 2, 4], [9, 8, 6], [2, 5, 1]]


# ---------------------------------------------------------------- the exact pass and the tie rule
SHALLOW_KEYS = [  # metrics that read no deeper than R_q or k: the pass may rank by a top-k
    "e_recall@1",
    "e_recall@3",
    "c_recall@2",
    "precision_at_1",
    "r_precision",
    "mAP_R",
    "mrr@2",
    "mAP_dada@4",
    "mAP_robrank@3",
]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("full_rows", [0.0, 2.0])  # every query dense (top-k or whole) / none
def test_exact_pass_with_top_k_rows_matches_reference(monkeypatch, ties, full_rows):
    monkeypatch.setattr(relevant_ranks, "FULL_ROW_FRACTION", full_rows)
    monkeypatch.setattr(relevant_ranks, "DENSE_BLOCKS", 0.0)
    if ties:
        rng = np.random.default_rng(21)
        x = rng.integers(0, 3, size=(70, 3)).astype(np.float32)
        y = rng.integers(0, 3, 70)
        keys = [key for key in SHALLOW_KEYS if not key.startswith("c_")]
    else:
        x, y = random_data(n=70, classes=4, seed=22)
        keys = SHALLOW_KEYS
    expected = slow_values(keys, x, y, optimistic=False if ties else None)
    evaluator = metrics.Evaluator(keys, chunk_size=9)
    assert_values(evaluator.compute(x, y), expected)
    assert evaluator.paths["euclidean"].startswith("exact, top-k") == (full_rows == 0.0)
    assert_values(metrics.Evaluator(keys, chunk_size=9, ranking="exact").compute(x, y), expected)


@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
def test_hand_made_ties(backend):
    """Query 0 at the origin; at distance 1 an irrelevant and a relevant item, at distance 2 an
    irrelevant and a relevant one. Irrelevant first at equal distance: the relevant items rank
    2 and 4."""
    x = np.array([[0, 0], [1, 0], [0, -1], [2, 0], [-2, 0]], np.float32)
    y = np.array([0, 1, 0, 0, 1])
    query, gallery = np.arange(5) == 0, np.arange(5) > 0
    keys = ["e_recall@1", "e_recall@2", "precision_at_1", "r_precision", "mAP_R", "mrr", "mAP"]
    make = metrics.Evaluator if backend == "auto" else evaluator
    kwargs = {} if backend == "auto" else {"backend": backend}
    got = make(keys, **kwargs).compute(x, y, query=query, gallery=gallery)
    assert got == {
        "e_recall@1": 0.0,
        "e_recall@2": 1.0,
        "precision_at_1": 0.0,
        "r_precision": 0.5,
        "mAP_R": 0.25,  # (1/2)·(1/2 + 0): the second relevant item ranks beyond R = 2
        "mrr": 0.5,
        "mAP": 0.5,  # (1/2)·(1/2 + 2/4)
    }


@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
def test_tie_group_running_past_the_search(monkeypatch, backend):
    """Three relevant items and one irrelevant one, all at distance 1, searched 2 deep (R@1 only):
    the top-k sees part of the tie group, so those rows are counted instead."""
    monkeypatch.setattr(relevant_ranks, "FULL_ROW_FRACTION", 0.0)
    monkeypatch.setattr(relevant_ranks, "DENSE_BLOCKS", 0.0)
    x = np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1], [5, 5], [6, 5]], np.float32)
    y = np.array([0, 0, 0, 0, 1, 2, 2])
    query, gallery = np.arange(7) == 0, np.arange(7) > 0
    keys = ["e_recall@1", "precision_at_1"]
    make = metrics.Evaluator if backend == "auto" else evaluator
    kwargs = {} if backend == "auto" else {"backend": backend}
    inputs = make(keys, **kwargs).prepare(x, y, query=query, gallery=gallery)
    first = inputs.relevant_ranks().first().tolist()
    # Rank 2, after the irrelevant item: counted on the exact pass, beyond the depth on top-k.
    assert first == ([2] if backend in ("auto", "exact") else [relevant_ranks.NO_RANK])
    assert make(keys, **kwargs).compute(x, y, query=query, gallery=gallery) == {
        "e_recall@1": 0.0,
        "precision_at_1": 0.0,
    }


def test_a_query_without_relevant_items():
    x, y = random_data(n=12, classes=3, seed=23)
    y[0] = 99  # a lone query: a miss for R@k, left out of the averages over R_q > 0
    keys = ["e_recall@1", "mAP_R", "mAP", "mrr", "r_precision", "mAP_c", "mAP_robrank"]
    got = metrics.Evaluator(keys).compute(x, y)
    assert_values(got, slow_values(keys, x, y))
    inputs = metrics.Evaluator(keys).prepare(x, y)
    assert inputs.relevant_ranks().first()[0] == relevant_ranks.NO_RANK


@pytest.mark.parametrize("masks", [False, True])
def test_exact_pass_equals_the_top_k_path(masks):
    """Tie-free data: the exact pass and the search give the same value of every key (the
    top-k path cannot read the full ranking's mAP past its depth, so it searches all of it)."""
    x, y = random_data(n=150, d=8, classes=12, seed=24)
    extra = {}
    if masks:
        rng = np.random.default_rng(24)
        query = rng.random(150) < 0.4
        extra = {"query": query, "gallery": ~query | (rng.random(150) < 0.3)}
    exact = metrics.Evaluator(KEYS, ranking="exact").compute(x, y, **extra)
    searched = metrics.Evaluator(KEYS, ranking="topk", backend="torch").compute(x, y, **extra)
    auto = metrics.Evaluator(KEYS).compute(x, y, **extra)
    assert_values(exact, searched, abs_tol=1e-6)
    assert_values(auto, searched, abs_tol=1e-6)
