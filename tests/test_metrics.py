"""metrics/: the evaluator and each metric against slow, obviously-correct per-query references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

import metrics
from metrics import engine
from metrics.base import EvalInputs, Metric
from metrics.clustering import kmeans
from metrics.engine import Evaluator
from metrics.knn import faiss_module, nearest_neighbours
from utilities.errors import ConfigError

needs_faiss = pytest.mark.skipif(faiss_module() is None, reason="faiss not installed")
KNN_KEYS = ["e_recall@1", "e_recall@2", "e_recall@4", "e_recall@8", "mAP_R"]


# ---------------------------------------------------------------- slow references
def reference_rankings(x, y, query=None, gallery=None, optimistic=None):
    """Per query: (label, relevance list over its full ranking, R_q), by a full sort of its row.

    Distances are exact per-pair sums; ties are broken by index, or with relevant items first
    (``optimistic=True``) or last (``False``), bounding every valid tie order.
    """
    n = len(y)
    query = np.ones(n, bool) if query is None else query
    gallery = np.ones(n, bool) if gallery is None else gallery
    rows = []
    for q in np.flatnonzero(query):
        others = [g for g in np.flatnonzero(gallery) if g != q]
        dist = np.array([((x[q] - x[g]) ** 2).sum() for g in others])
        rel = np.array([y[g] == y[q] for g in others], bool)
        tie = np.zeros(len(others)) if optimistic is None else (~rel if optimistic else rel)
        order = np.lexsort((np.arange(len(others)), tie, dist))
        rows.append((y[q], rel[order], int(rel.sum())))
    return rows


def slow_recall(rows, k):
    return float(np.mean([rel[:k].any() for _, rel, _ in rows])) if rows else float("nan")


def slow_map_r(rows):
    scores = []
    for _, rel, r in rows:
        if r == 0:
            continue
        hits, total = 0, 0.0
        for i in range(r):
            if rel[i]:
                hits += 1
                total += hits / (i + 1)
        scores.append(total / r)
    return float(np.mean(scores)) if scores else float("nan")


def slow_values(x, y, query=None, gallery=None, optimistic=None):
    rows = reference_rankings(x, y, query, gallery, optimistic)
    values = {f"e_recall@{k}": slow_recall(rows, k) for k in (1, 2, 4, 8)}
    values["mAP_R"] = slow_map_r(rows)
    return values


def slow_pair_f1(labels, clusters):
    tp = fp = fn = 0
    for i, j in itertools.combinations(range(len(labels)), 2):
        same_class, same_cluster = labels[i] == labels[j], clusters[i] == clusters[j]
        tp += same_class and same_cluster
        fp += same_cluster and not same_class
        fn += same_class and not same_cluster
    if tp == 0:
        return 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 2 * precision * recall / (precision + recall)


def assert_values(got, expected):
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert isinstance(got[key], float)
        if np.isnan(value):
            assert np.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, abs=1e-6), key


# ---------------------------------------------------------------- data
def random_data(n=60, d=5, classes=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, classes, n)


def integer_data(n=50, d=3, classes=4, seed=0):
    """Small-integer embeddings: distances are exact in float32, with many cross-label ties."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 3, size=(n, d)).astype(np.float32), rng.integers(0, classes, n)


# ---------------------------------------------------------------- neighbour metrics
# The exact path, and the top-k path with each search backend.
PATHS = ["exact", "torch", pytest.param("faiss", marks=needs_faiss)]


def evaluator(keys, backend, **kwargs):
    """The Evaluator of ``keys`` on a path of PATHS: "exact", or top-k with that backend."""
    if backend == "exact":
        return metrics.Evaluator(keys, backend="torch", ranking="exact", **kwargs)
    return metrics.Evaluator(keys, backend=backend, ranking="topk", **kwargs)


@pytest.mark.parametrize("backend", PATHS)
@pytest.mark.parametrize("seed", [0, 1])
def test_knn_metrics_match_slow_reference(backend, seed):
    x, y = random_data(seed=seed)
    got = evaluator(KNN_KEYS, backend).compute(x, y)
    assert_values(got, slow_values(x, y))


@pytest.mark.parametrize("backend", PATHS)
def test_ties_take_the_worst_tie_order(backend):
    x, y = integer_data()
    got = evaluator(KNN_KEYS, backend).compute(x, y)
    best = slow_values(x, y, optimistic=True)
    worst = slow_values(x, y, optimistic=False)
    assert any(best[k] > worst[k] for k in KNN_KEYS)  # the data really has label-crossing ties
    assert_values(got, worst)


@pytest.mark.parametrize("backend", PATHS)
def test_duplicates_excluded_by_index_not_by_first_column(backend):
    x, y = random_data(n=20, classes=5)
    x, y = np.concatenate([x, x]), np.concatenate([y, y])  # every point has an exact twin
    assert evaluator(["e_recall@1", "mAP_R"], backend).compute(x, y)["e_recall@1"] == 1.0
    if backend != "exact":
        inputs = evaluator(["e_recall@1", "mAP_R"], backend).prepare(x, y)
        own = torch.arange(40)
        assert not (inputs.neighbours == own[:, None]).any()
        twin = (own + 20) % 40
        assert (inputs.neighbours[:, 0] == twin).all()


def test_singleton_classes_excluded_from_map_r():
    x, y = random_data(n=30, classes=5)
    y = np.concatenate([y, [100, 101, 102]])  # three lone queries
    x = np.concatenate([x, np.random.default_rng(5).normal(size=(3, 5)).astype(np.float32)])
    got = metrics.Evaluator(KNN_KEYS).compute(x, y)
    assert_values(got, slow_values(x, y))
    only_singletons = metrics.Evaluator(["mAP_R", "e_recall@1"]).compute(x[:4], np.arange(4))
    assert np.isnan(only_singletons["mAP_R"]) and only_singletons["e_recall@1"] == 0.0


def test_one_class_is_perfect():
    x, _ = random_data(n=15)
    got = metrics.Evaluator(["e_recall@1", "mAP_R", "nmi", "f1"]).compute(x, np.zeros(15, int))
    assert got == {"e_recall@1": 1.0, "mAP_R": 1.0, "nmi": 1.0, "f1": 1.0}


@pytest.mark.parametrize("backend", PATHS)
@pytest.mark.parametrize("overlap", [False, True])
def test_query_gallery_protocol(backend, overlap):
    x, y = random_data(n=70, classes=10, seed=3)
    rng = np.random.default_rng(3)
    query = rng.random(70) < 0.4
    gallery = ~query | (overlap & (rng.random(70) < 0.5))
    gallery &= y != 9  # class 9 only among queries: R_q = 0, excluded from MAP@R, misses for R@k
    query[np.flatnonzero(y == 9)[0]] = True
    got = evaluator(KNN_KEYS, backend).compute(x, y, query=query, gallery=gallery)
    assert_values(got, slow_values(x, y, query, gallery))


def test_depth_beyond_gallery_pads_without_counting_self():
    x, y = random_data(n=5, classes=2)
    got = metrics.Evaluator(["e_recall@8", "e_recall@1"], backend="torch").compute(x, y)
    expected = slow_values(x, y)
    assert_values(got, {key: expected[key] for key in got})
    assert got["e_recall@8"] == 1.0 - float(np.mean(np.bincount(y)[y] == 1))
    inputs = metrics.Evaluator(["e_recall@8"], backend="torch", ranking="topk").prepare(x, y)
    assert inputs.neighbours.shape == (5, 5) and (inputs.neighbours[:, -1] == -1).all()


# ---------------------------------------------------------------- search engine
@needs_faiss
def test_torch_and_faiss_neighbours_agree_up_to_ties():
    x, y = integer_data(n=60, d=4)
    query = np.arange(60) % 3 != 0
    gallery = np.arange(60) % 2 == 0
    found = {
        backend: metrics.Evaluator(["e_recall@6"], backend=backend, ranking="topk")
        .prepare(x, y, query=query, gallery=gallery)
        .neighbours
        for backend in ("torch", "faiss")
    }
    assert found["torch"].shape == found["faiss"].shape
    q = torch.from_numpy(x)[torch.from_numpy(query)]

    def distances(idx):
        return ((q[:, None, :] - torch.from_numpy(x)[idx]) ** 2).sum(-1)

    torch.testing.assert_close(distances(found["torch"]), distances(found["faiss"]))
    assert (distances(found["torch"]).diff(dim=1) >= 0).all()


def test_chunked_search_equals_single_chunk():
    x, y = random_data(n=80)
    for ranking in ("topk", "exact"):
        whole = metrics.Evaluator(KNN_KEYS, ranking=ranking, chunk_size=10**6).prepare(x, y)
        chunked = metrics.Evaluator(KNN_KEYS, ranking=ranking, chunk_size=7).prepare(x, y)
        if ranking == "topk":
            assert torch.equal(whole.neighbours, chunked.neighbours)
        for part in ("ranks", "hits"):
            assert torch.equal(
                getattr(whole.relevant_ranks(), part), getattr(chunked.relevant_ranks(), part)
            )


def test_neighbour_search_runs_once_at_largest_depth(monkeypatch):
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[3])
        return nearest_neighbours(*args, **kwargs)

    monkeypatch.setattr(engine, "nearest_neighbours", counting)
    x, y = random_data(n=40, classes=3)  # classes of ~13: MAP@R needs depth > 8
    metrics.Evaluator(KNN_KEYS + ["nmi"], ranking="topk").compute(x, y)
    # One deeper than the deepest metric, so a tie group reaching past it is seen.
    assert calls == [max(8, int(np.bincount(y).max()) - 1) + 1]
    calls.clear()
    metrics.Evaluator(["nmi", "f1"], ranking="topk").compute(x, y)
    metrics.Evaluator(KNN_KEYS, ranking="exact").compute(x, y)
    assert calls == []


def test_progress_bar_option_runs():
    x, y = random_data(n=30)
    assert metrics.Evaluator(["e_recall@1"], show_progress=True, chunk_size=8).compute(x, y)


# ---------------------------------------------------------------- clustering metrics
@pytest.mark.parametrize("backend", ["torch", pytest.param("faiss", marks=needs_faiss)])
def test_kmeans_uses_number_of_classes_of_evaluated_set(monkeypatch, backend):
    seen = []

    def recording(points, k, **kwargs):
        seen.append((points.shape[0], k))
        return kmeans(points, k, **kwargs)

    monkeypatch.setattr(engine, "kmeans", recording)
    x, y = random_data(n=60, classes=6)
    query = y < 3  # queries hold 3 of the 6 classes
    inputs = metrics.Evaluator(["nmi", "f1"], backend=backend).prepare(x, y, query=query)
    assert seen == [(int(query.sum()), 3)]
    assert inputs.cluster_ids.shape == (int(query.sum()),)
    assert int(inputs.cluster_ids.min()) >= 0 and int(inputs.cluster_ids.max()) < 3


@pytest.mark.parametrize("backend", ["torch", pytest.param("faiss", marks=needs_faiss)])
def test_nmi_alone_equals_sklearn_on_the_same_clusters(backend):
    x, y = random_data(n=90, classes=5, seed=2)
    evaluator = metrics.Evaluator(["nmi"], kmeans_seed=3, backend=backend)
    inputs = evaluator.prepare(x, y)
    assert inputs.neighbours is None
    expected = normalized_mutual_info_score(y, inputs.cluster_ids.numpy())
    got = evaluator.compute(x, y)
    assert got["nmi"] == pytest.approx(expected, abs=1e-12) and 0 <= got["nmi"] <= 1


def test_kmeans_is_seeded_and_as_good_as_faiss_on_clear_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 6)) * 20
    y = np.repeat(np.arange(4), 25)
    x = torch.from_numpy((centres[y] + rng.normal(size=(100, 6))).astype(np.float32))
    first = kmeans(x, 4, seed=7, backend="torch", chunk_size=9)
    assert torch.equal(first, kmeans(x, 4, seed=7, backend="torch"))
    assert set(first.tolist()) <= set(range(4))

    def mean_nmi(backend):
        ids = [kmeans(x, 4, seed=seed, backend=backend).numpy() for seed in range(10)]
        return np.mean([normalized_mutual_info_score(y, i) for i in ids])

    # Random initialisation (as faiss) sometimes merges two blobs; on average it separates them.
    assert mean_nmi("torch") > 0.75
    if faiss_module() is not None:
        assert mean_nmi("torch") > mean_nmi("faiss") - 0.05


def test_torch_kmeans_refills_empty_clusters():
    x = torch.cat([torch.zeros(10, 2), torch.ones(10, 2) * 5])  # duplicates: empty clusters
    ids = kmeans(x, 4, seed=0, backend="torch")
    assert ids.shape == (20,) and int(ids.max()) < 4
    assert len(set(ids[:10].tolist()) & set(ids[10:].tolist())) == 0


@pytest.mark.parametrize("seed", range(4))
def test_f1_equals_brute_force_pair_loop(seed):
    rng = np.random.default_rng(seed)
    n = 40
    labels = rng.integers(10, 10 + rng.integers(1, 8), n)
    clusters = rng.integers(0, rng.integers(1, 8), n)
    inputs = EvalInputs(
        embeddings=torch.zeros(n, 2),
        labels=torch.from_numpy(labels),
        query_index=torch.arange(n),
        gallery_index=torch.arange(n),
        self_position=torch.arange(n),
        relevant_counts=torch.zeros(n, dtype=torch.long),
        cluster_ids=torch.from_numpy(clusters),
    )
    got = metrics.build_metrics(["f1"])[0].compute(inputs)
    assert got == pytest.approx(slow_pair_f1(labels, clusters), abs=1e-12)


def test_f1_zero_without_pairs_and_in_unit_interval():
    x, y = random_data(n=8)
    assert metrics.Evaluator(["f1"]).compute(x, np.arange(8))["f1"] == 0.0
    x, y = random_data(n=50, classes=4)
    assert (
        0.0
        <= metrics.Evaluator(["f1"]).compute(torch.from_numpy(x), torch.from_numpy(y))["f1"]
        <= 1
    )


# ---------------------------------------------------------------- keys and errors
def test_parse_metric_key():
    assert metrics.parse_metric_key("e_recall@4") == ("e_recall", "4")
    assert metrics.parse_metric_key("nmi") == ("nmi", None)
    assert [m.key for m in metrics.build_metrics(["e_recall@4", "mAP_R"])] == [
        "e_recall@4",
        "mAP_R",
    ]


def test_unknown_key_names_flag_and_closest_match():
    with pytest.raises(
        ConfigError, match=r"--evaluation_metrics.*'e_recal'.*did you mean 'e_recall'"
    ):
        metrics.Evaluator(["e_recal@1"])


@pytest.mark.parametrize(
    "key", ["e_recall@0", "e_recall@x", "e_recall@", "e_recall", "nmi@3", "mAP_R@2"]
)
def test_bad_argument_is_a_config_error(key):
    with pytest.raises(ConfigError, match="--evaluation_metrics"):
        metrics.build_metrics([key])


def test_bad_backend_and_inputs():
    with pytest.raises(ConfigError, match="backend"):
        metrics.Evaluator(["nmi"], backend="gpu")
    x, y = random_data(n=10)
    evaluator = metrics.Evaluator(["e_recall@1"])
    with pytest.raises(ValueError, match="query mask"):
        evaluator.compute(x, y, query=np.ones(9, bool))
    with pytest.raises(ValueError, match="non-finite|NaN"):
        evaluator.compute(np.full_like(x, np.nan), y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_stay_on_gpu_and_match_cpu():
    x, y = random_data(n=200, classes=10)
    keys = KNN_KEYS + ["nmi", "f1"]
    on_cpu = metrics.Evaluator(keys, backend="torch").compute(x, y)
    evaluator = metrics.Evaluator(keys)
    inputs = evaluator.prepare(torch.from_numpy(x).to("cuda"), torch.from_numpy(y).to("cuda"))
    assert inputs.neighbours.is_cuda and inputs.cluster_ids.is_cuda
    on_gpu = evaluator.compute(torch.from_numpy(x).to("cuda"), torch.from_numpy(y).to("cuda"))
    assert_values({k: on_gpu[k] for k in KNN_KEYS}, {k: on_cpu[k] for k in KNN_KEYS})


class ModelProbe(Metric):
    """A metric that runs the model again: records what the evaluator hands it."""

    requires = frozenset({"model"})
    registry_key = "model_probe"

    def compute(self, inputs: EvalInputs) -> float:
        self.seen = (inputs.model, inputs.dataset)
        return 0.0


def test_model_metrics_receive_the_model_and_refuse_precomputed_embeddings():
    evaluator = Evaluator(["e_recall@1"])
    probe = ModelProbe()
    evaluator.metrics.append(probe)
    x, y = torch.eye(4), torch.tensor([0, 0, 1, 1])
    with pytest.raises(ConfigError, match="model_probe must run the model"):
        evaluator.compute(x, y)
    model, dataset = torch.nn.Identity(), object()
    assert evaluator.compute(x, y, model=model, dataset=dataset)["model_probe"] == 0.0
    assert probe.seen == (model, dataset)
