"""Clustering metrics (NMI, AMI, F1 and their cosine variants) and the embedding statistics
(dists, rho_spectrum) against scikit-learn, scipy and slow loops written here."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.stats import entropy
from sklearn.decomposition import TruncatedSVD
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

import metrics
from metrics import clustering, engine
from metrics.clustering import (
    GROUPED_ARGMIN_MIN_K,
    NITER,
    _grouped_argmin,
    _split_for_empty,
    kmeans,
    kmeans_centroids,
    nearest_centroid,
)
from metrics.dists import mean_inter_distance, mean_intra_distance
from metrics.knn import faiss_module
from metrics.nmi import normalized_mutual_information
from utilities.errors import ConfigError

needs_faiss = pytest.mark.skipif(faiss_module() is None, reason="faiss not installed")
BACKENDS = ["torch", pytest.param("faiss", marks=needs_faiss)]


def random_data(n=60, d=5, classes=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.2, 3.0, size=(n, 1))
    return x.astype(np.float32), rng.integers(0, classes, n)


# ---------------------------------------------------------------- NMI / AMI
LABELINGS = [
    ([0] * 10, [3] * 10),  # one class, one cluster: 1
    ([0] * 10, list(range(10))),  # one class, singletons: 0
    (list(range(8)), list(range(8))),  # singletons both: 1
    (list(range(8)), [0] * 8),
    ([5, 5, 7, 7, 9], [1, 0, 1, 0, 2]),
]


@pytest.mark.parametrize("labels, clusters", LABELINGS)
def test_nmi_equals_sklearn_on_edge_cases(labels, clusters):
    got = normalized_mutual_information(torch.tensor(labels), torch.tensor(clusters))
    assert got == pytest.approx(normalized_mutual_info_score(labels, clusters), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_nmi_equals_sklearn_on_random_labelings(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    labels = rng.integers(-3, int(rng.integers(1, 50)), n)
    clusters = rng.integers(0, int(rng.integers(1, 50)), n) * 7
    got = normalized_mutual_information(torch.from_numpy(labels), torch.from_numpy(clusters))
    assert got == pytest.approx(normalized_mutual_info_score(labels, clusters), abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_clustering_metrics_equal_references_on_the_evaluators_clusters(backend):
    x, y = random_data(n=90, classes=5, seed=2)
    keys = ["nmi", "ami", "f1", "c_nmi", "c_f1"]
    evaluator = metrics.Evaluator(keys, kmeans_seed=3, backend=backend)
    inputs = evaluator.prepare(x, y)
    got = evaluator.compute(x, y)
    for space, prefix in (("euclidean", ""), ("cosine", "c_")):
        clusters = inputs.clusters(space).numpy()
        assert got[f"{prefix}nmi"] == pytest.approx(normalized_mutual_info_score(y, clusters))
        assert got[f"{prefix}f1"] == pytest.approx(slow_pair_f1(y, clusters), abs=1e-12)
    clusters = inputs.cluster_ids.numpy()
    assert got["ami"] == pytest.approx(adjusted_mutual_info_score(y, clusters), abs=1e-12)


def slow_pair_f1(labels, clusters):
    tp = fp = fn = 0
    for i, j in itertools.combinations(range(len(labels)), 2):
        same_class, same_cluster = labels[i] == labels[j], clusters[i] == clusters[j]
        tp += same_class and same_cluster
        fp += same_cluster and not same_class
        fn += same_class and not same_cluster
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def test_kmeans_runs_once_per_space_on_the_right_features(monkeypatch):
    seen = []

    def recording(points, k, **kwargs):
        seen.append((points.clone(), k, kwargs["spherical"]))
        return kmeans(points, k, **kwargs)

    monkeypatch.setattr(engine, "kmeans", recording)
    x, y = random_data(n=60, classes=6, seed=4)
    query = y < 4  # the evaluated queries hold 4 classes
    keys = ["nmi", "f1", "ami", "c_nmi", "c_f1"]
    metrics.Evaluator(keys).compute(x, y, query=query, gallery=np.ones(60, bool))
    assert [(p.shape[0], k, s) for p, k, s in seen] == [
        (query.sum(), 4, False),
        (query.sum(), 4, True),
    ]
    torch.testing.assert_close(seen[0][0], torch.from_numpy(x[query]))
    torch.testing.assert_close(seen[1][0].norm(dim=1), torch.ones(int(query.sum())))


@pytest.mark.parametrize("backend", BACKENDS)
def test_spherical_assignment_uses_the_normalised_centroids(backend):
    x, _ = random_data(n=80, d=3, seed=5)
    points = torch.nn.functional.normalize(torch.from_numpy(x), dim=1)
    centroids = kmeans_centroids(points, 6, seed=1, backend=backend)
    by_cosine = (points @ torch.nn.functional.normalize(centroids, dim=1).T).argmax(1)
    by_distance = torch.cdist(points, centroids).argmin(1)
    assert torch.equal(kmeans(points, 6, seed=1, backend=backend, spherical=True), by_cosine)
    assert torch.equal(kmeans(points, 6, seed=1, backend=backend), by_distance)


def test_nmi_alone_and_cosine_alone_need_no_neighbours():
    x, y = random_data(n=40, classes=4, seed=6)
    for key in ("nmi", "c_nmi", "ami", "c_f1"):
        inputs = metrics.Evaluator([key]).prepare(x, y)
        assert inputs.neighbours is None and inputs.cosine_neighbours is None
        assert 0 <= metrics.Evaluator([key]).compute(x, y)[key] <= 1 or key == "ami"


def test_no_queries_gives_nan():
    x, y = random_data(n=10, seed=7)
    got = metrics.Evaluator(["nmi", "f1", "c_nmi", "ami"]).compute(
        x, y, query=np.zeros(10, bool), gallery=np.ones(10, bool)
    )
    assert all(np.isnan(v) for v in got.values())


# ---------------------------------------------------------------- torch k-means
def test_grouped_argmin_is_the_first_minimum_like_argmin():
    rng = np.random.default_rng(11)
    scores = torch.from_numpy(rng.integers(0, 4, size=(40, 5 * 64)).astype(np.float32))
    scores[3] = 7.0  # a row of ties: index 0
    scores[4, [10, 70, 300]] = -1.0  # ties within and across groups: the first
    scores[5, -20:] = float("inf")  # padding columns
    assert torch.equal(_grouped_argmin(scores), scores.argmin(1))
    assert _grouped_argmin(scores)[4] == 10


@pytest.mark.parametrize("k", [17, GROUPED_ARGMIN_MIN_K + 44])
@pytest.mark.parametrize("chunk_size", [7, 1000])
def test_nearest_centroid_is_the_first_nearest_on_exact_ties(k, chunk_size):
    """Small integer coordinates: float32 scores are exact, so ties are exact ties."""
    rng = np.random.default_rng(k)
    points = torch.from_numpy(rng.integers(-3, 4, size=(500, 4)).astype(np.float32))
    centroids = torch.from_numpy(rng.integers(-3, 4, size=(k, 4)).astype(np.float32))
    exact = ((points[:, None].double() - centroids[None].double()) ** 2).sum(2)
    assert torch.equal(nearest_centroid(points, centroids, chunk_size), exact.argmin(1))


def every_round_kmeans(points, k, seed, chunk_size):
    """The torch k-means without its early stop: all NITER rounds, then the final assignment."""
    generator = torch.Generator().manual_seed(seed)
    centroids = points[torch.randperm(points.shape[0], generator=generator)[:k]].clone()
    for _ in range(NITER):
        assignment = nearest_centroid(points, centroids, chunk_size)
        counts = torch.bincount(assignment, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
        _split_for_empty(centroids, counts, generator)
    return centroids, nearest_centroid(points, centroids, chunk_size)


@pytest.mark.parametrize("converges", [True, False])
def test_torch_kmeans_early_stop_gives_the_result_of_every_round(monkeypatch, converges):
    rng = np.random.default_rng(12)
    if converges:  # four clear blobs
        centres = rng.normal(size=(4, 3)) * 20
        x = centres[np.repeat(np.arange(4), 50)] + rng.normal(size=(200, 3))
        k = 4
    else:  # a uniform square in many clusters (grouped argmin): still moving after 20 rounds
        x, k = rng.uniform(size=(8000, 2)), GROUPED_ARGMIN_MIN_K + 44
    points = torch.from_numpy(x.astype(np.float32))
    expected_centroids, expected_ids = every_round_kmeans(points, k, seed=5, chunk_size=1000)
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return nearest_centroid(*args, **kwargs)

    monkeypatch.setattr(clustering, "nearest_centroid", counting)
    ids = kmeans(points, k, seed=5, backend="torch", chunk_size=1000)
    assert torch.equal(ids, expected_ids)
    assert (len(calls) < NITER) if converges else (len(calls) == NITER + 1)
    centroids = kmeans_centroids(points, k, seed=5, backend="torch", chunk_size=1000)
    assert torch.equal(centroids, expected_centroids)
    # The default chunk (one block here) gives the same clusters.
    assert torch.equal(kmeans(points, k, seed=5, backend="torch"), expected_ids)


# ---------------------------------------------------------------- dists
def slow_intra(x, y):
    values = []
    for c in np.unique(y):
        members = x[y == c].astype(np.float64)
        n = len(members)
        values.append(cdist(members, members, "cosine").sum() / (n * n - n) if n > 1 else np.nan)
    values = np.array(values)
    values[np.isnan(values)] = np.nanmax(values)  # the reference's intent for singletons
    return values.mean()


def slow_inter(x, y):
    means = np.stack([x[y == c].astype(np.float64).mean(0) for c in np.unique(y)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    c = len(means)
    return cdist(means, means, "cosine").sum() / (c * c - c)


@pytest.mark.parametrize("seed", range(3))
def test_dists_equal_scipy_loops(seed):
    x, y = random_data(n=70, classes=8, seed=seed)
    y[:3] = [100, 101, 102]  # singleton classes
    keys = ["dists@intra", "dists@inter", "dists@intra_over_inter"]
    got = metrics.Evaluator(keys).compute(x, y)
    intra, inter = slow_intra(x, y), slow_inter(x, y)
    assert got["dists@intra"] == pytest.approx(intra, abs=1e-9)
    assert got["dists@inter"] == pytest.approx(inter, abs=1e-9)
    assert got["dists@intra_over_inter"] == pytest.approx(intra / inter, abs=1e-9)


def test_dists_edge_cases():
    x, _ = random_data(n=6, seed=3)
    t = torch.from_numpy(x)
    assert np.isnan(mean_intra_distance(t, torch.arange(6)))  # all singletons
    assert np.isnan(mean_inter_distance(t, torch.zeros(6, dtype=torch.long)))  # one class
    assert mean_intra_distance(torch.ones(4, 3), torch.tensor([0, 0, 1, 1])) == pytest.approx(0)
    with pytest.raises(ConfigError, match="dists@MODE"):
        metrics.build_metrics(["dists@intra_inter"])
    with pytest.raises(ConfigError, match="dists@MODE"):
        metrics.build_metrics(["dists"])


# ---------------------------------------------------------------- rho_spectrum
def slow_rho(x, mode):
    s = np.linalg.svd(x.astype(np.float64), compute_uv=False)[abs(mode) - 1 :]
    s = s / s.sum()
    uniform = np.ones_like(s) / len(s)
    return entropy(uniform, s) if mode > 0 else entropy(s, uniform)


@pytest.mark.parametrize("mode", [1, 2, 5, -1, -3])
def test_rho_spectrum_equals_numpy_svd_and_scipy_entropy(mode):
    x, y = random_data(n=50, d=12, seed=8)
    x[:, :3] *= 10  # a decaying spectrum
    got = metrics.Evaluator([f"rho_spectrum@{mode}"]).compute(x, y)
    assert got[f"rho_spectrum@{mode}"] == pytest.approx(slow_rho(x, mode), rel=1e-9)


@pytest.mark.parametrize("mode", [1, 2, 5, -1, -3])
def test_rho_spectrum_revisit_equals_sklearn_truncated_svd(mode):
    """The reference's CPU path: TruncatedSVD(D − 1, n_iter=7, random_state=42)."""
    x, y = random_data(n=200, d=12, seed=8)
    x[:, :3] *= 10
    x[:, -1] *= 0.01  # a tiny last singular value: ignored by the reference, not by ours
    s = TruncatedSVD(n_components=11, n_iter=7, random_state=42).fit(x).singular_values_
    s = s[abs(mode) - 1 :] / s[abs(mode) - 1 :].sum()
    uniform = np.ones_like(s) / len(s)
    expected = entropy(uniform, s) if mode > 0 else entropy(s, uniform)
    keys = [f"rho_spectrum_revisit@{mode}", f"rho_spectrum@{mode}"]
    got = metrics.Evaluator(keys).compute(x, y)
    assert got[keys[0]] == pytest.approx(expected, rel=1e-5)
    assert got[keys[1]] == pytest.approx(slow_rho(x, mode), rel=1e-9)
    if mode > 0:  # KL(U ‖ s̃) is dominated by the smallest value, which only ours keeps
        assert got[keys[1]] > got[keys[0]] + 0.1


@pytest.mark.parametrize("key", ["rho_spectrum", "rho_spectrum@x", "rho_spectrum_revisit@1.5"])
def test_rho_spectrum_rejects_bad_modes(key):
    with pytest.raises(ConfigError, match="--evaluation_metrics.*with an integer k"):
        metrics.build_metrics([key])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_embedding_statistics_agree_on_cpu_and_gpu():
    x, y = random_data(n=200, d=16, classes=10, seed=9)
    keys = ["rho_spectrum@1", "rho_spectrum@-2", "rho_spectrum_revisit@2", "dists@intra"]
    cpu = metrics.Evaluator(keys).compute(x, y)
    gpu = metrics.Evaluator(keys).compute(
        torch.from_numpy(x).to("cuda"), torch.from_numpy(y).to("cuda")
    )
    assert [gpu[k] for k in keys] == pytest.approx([cpu[k] for k in keys], rel=1e-6)


def test_fixed_kmeans_clusters_reproduce_the_reference_k(monkeypatch):
    seen = []

    def recording(points, k, **kwargs):
        seen.append(k)
        return kmeans(points, k, **kwargs)

    monkeypatch.setattr(engine, "kmeans", recording)
    x, y = random_data(n=40, classes=4, seed=10)
    got = metrics.Evaluator(["nmi"], kmeans_clusters=7).compute(x, y)
    metrics.Evaluator(["nmi"], kmeans_clusters=100).compute(x, y)  # capped at the sample count
    assert seen == [7, 40] and 0 <= got["nmi"] <= 1
    with pytest.raises(ValueError, match="kmeans_clusters"):
        metrics.Evaluator(["nmi"], kmeans_clusters=0)
