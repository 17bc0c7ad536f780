"""The evaluator over the whole registry: every shared input computed once per split and space,
array-valued keys, closest-name errors, and torch vs faiss k-means."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

import metrics
from metrics import engine
from metrics.clustering import _split_for_empty, kmeans, nearest_centroid
from metrics.knn import faiss_module, nearest_neighbours
from metrics.relevant_ranks import exact_ranks
from tests.test_metrics_eval import every_key
from utilities.errors import ConfigError

needs_faiss = pytest.mark.skipif(faiss_module() is None, reason="faiss not installed")


def clustered(n=120, d=6, classes=9, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(classes, d))[y] * 3 + rng.normal(size=(n, d))
    return x.astype(np.float32), y


@pytest.mark.parametrize("ranking", ["exact", "topk"])
@pytest.mark.parametrize("with_masks", [False, True])
def test_each_shared_input_is_computed_once_per_space(monkeypatch, with_masks, ranking):
    searches, clusterings = [], []

    def counting_search(queries, gallery, self_position, k, **kwargs):
        searches.append((bool(torch.allclose(queries.norm(dim=1), torch.ones(1))), k))
        return nearest_neighbours(queries, gallery, self_position, k, **kwargs)

    def counting_exact(queries, gallery, self_position, relevant, **kwargs):
        searches.append((bool(torch.allclose(queries.norm(dim=1), torch.ones(1))), "exact"))
        return exact_ranks(queries, gallery, self_position, relevant, **kwargs)

    def counting_kmeans(points, k, **kwargs):
        clusterings.append(kwargs["spherical"])
        return kmeans(points, k, **kwargs)

    monkeypatch.setattr(engine, "nearest_neighbours", counting_search)
    monkeypatch.setattr(engine, "exact_ranks", counting_exact)
    monkeypatch.setattr(engine, "kmeans", counting_kmeans)
    x, y = clustered()
    masks = {}
    if with_masks:
        masks = {"query": np.arange(120) % 2 == 0, "gallery": np.arange(120) % 2 == 1}
    keys = every_key()
    got = metrics.Evaluator(keys, ranking=ranking).compute(x, y, **masks, with_arrays=True)
    assert list(got) == keys
    # One exact pass or one search per space, the search one deeper than the deepest reader
    # (mAP_1000 and c_mAP_1000: 1000; the search caps it at the gallery), one k-means per space.
    depth = "exact" if ranking == "exact" else 1001
    assert sorted(searches, key=str) == [(False, depth), (True, depth)]
    assert sorted(clusterings) == [False, True]


def test_array_valued_keys_stay_out_of_the_scalar_results(monkeypatch):
    x, y = clustered(d=8)
    evaluator = metrics.Evaluator(["rho_spectrum@0", "e_recall@1", "rho_spectrum_revisit@0"])
    arrays = [m for m in evaluator.metrics if not m.scalar]
    for metric in arrays:  # compute() must not even run them (a full SVD per split and epoch)
        monkeypatch.setattr(metric, "compute", lambda inputs: pytest.fail("array metric ran"))
    scalars = evaluator.compute(x, y)
    monkeypatch.undo()
    everything = evaluator.compute(x, y, with_arrays=True)
    assert list(scalars) == ["e_recall@1"]
    assert list(everything) == ["rho_spectrum@0", "e_recall@1", "rho_spectrum_revisit@0"]
    s = np.linalg.svd(x.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(everything["rho_spectrum@0"], s / s.sum(), rtol=1e-9)
    np.testing.assert_allclose(everything["rho_spectrum_revisit@0"], s[:-1] / s[:-1].sum())


@pytest.mark.parametrize(
    "typed, meant",
    [("NMI", "nmi"), ("mAP@R", "mAP_R"), ("map_r", "mAP_R"), ("e_recal@1", "e_recall")],
)
def test_unknown_key_suggests_the_closest_name(typed, meant):
    with pytest.raises(ConfigError, match=rf"--evaluation_metrics: .*did you mean '{meant}'"):
        metrics.build_metrics([typed])


# ---------------------------------------------------------------- k-means backends
@needs_faiss
def test_nearest_centroid_backends_agree():
    rng = np.random.default_rng(1)
    points = torch.from_numpy(rng.normal(size=(300, 5)).astype(np.float32))
    centroids = torch.from_numpy(rng.normal(size=(17, 5)).astype(np.float32))
    assert torch.equal(
        nearest_centroid(points, centroids, 64, "torch"),
        nearest_centroid(points, centroids, 64, "faiss"),
    )


@needs_faiss
def test_torch_and_faiss_kmeans_give_the_same_scores_on_many_classes():
    """Same algorithm (random distinct points, 20 Lloyd rounds, faiss's empty-cluster rule):
    over seeds, NMI and F1 of the two backends agree closely on an SOP-like set (many small
    classes), where the empty-cluster rule matters."""
    x, y = clustered(n=1500, d=16, classes=300, seed=3)
    values = {}
    for backend in ("torch", "faiss"):
        nmi, f1 = [], []
        for seed in range(3):
            got = metrics.Evaluator(["nmi", "f1"], kmeans_seed=seed, backend=backend).compute(x, y)
            nmi.append(got["nmi"])
            f1.append(got["f1"])
        values[backend] = (np.mean(nmi), np.mean(f1))
    # Observed: |ΔNMI| ≈ 0.001, |ΔF1| ≈ 0.005; two Lloyd rounds instead of 20 give 0.01 / 0.04.
    assert values["torch"][0] == pytest.approx(values["faiss"][0], abs=0.006)
    assert values["torch"][1] == pytest.approx(values["faiss"][1], abs=0.02)


def test_empty_clusters_are_refilled_from_clusters_with_two_or_more_points():
    centroids = torch.arange(12, dtype=torch.float32).reshape(6, 2) + 1
    counts = torch.tensor([0, 1, 5, 0, 1, 3])
    before = centroids.clone()
    _split_for_empty(centroids, counts, torch.Generator().manual_seed(0))
    # Donors are the two clusters with >= 2 points (2 and 5), one each; singletons never split.
    moved = {tuple(before[i].tolist()) for i in (2, 5)}
    assert torch.equal(centroids[[1, 4]], before[[1, 4]])
    assert not torch.equal(centroids[2], before[2]) and not torch.equal(centroids[5], before[5])
    copies = centroids[[0, 3]] / (1 + torch.tensor([1.0, -1.0]) / 1024)
    assert {tuple(row) for row in copies.round(decimals=4).tolist()} == moved


def test_clustering_metrics_cluster_the_queries_under_query_gallery():
    """Clustering metrics cluster the queries only, K = distinct query labels."""
    x, y = clustered(seed=5)
    query = y % 3 != 0
    evaluator = metrics.Evaluator(["nmi"], backend="torch")
    inputs = evaluator.prepare(x, y, query=query, gallery=~query)
    got = evaluator.compute(x, y, query=query, gallery=~query)["nmi"]
    assert inputs.cluster_ids.shape == (int(query.sum()),)
    assert got == pytest.approx(normalized_mutual_info_score(y[query], inputs.cluster_ids))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", ["auto", pytest.param("faiss", marks=needs_faiss)])
def test_cuda_clusters_stay_on_the_embeddings_device(backend):
    x, y = clustered()
    got = metrics.Evaluator(["nmi", "c_f1"], backend=backend).prepare(
        torch.from_numpy(x).to("cuda"), torch.from_numpy(y).to("cuda")
    )
    assert got.cluster_ids.is_cuda and got.cosine_cluster_ids.is_cuda


def test_array_keys_are_never_storage_metrics():
    import parameters

    with pytest.raises(ConfigError, match="--storage_metrics: rho_spectrum@0 is an array"):
        parameters.parse_args(
            ["--evaluation_metrics", "rho_spectrum@0", "--storage_metrics", "rho_spectrum@0"]
        )


def test_per_epoch_evaluation_returns_scalars_and_eval_py_the_arrays_too():
    from utilities.embedding import evaluate_dataset
    from utilities.precision import Precision

    x, y = clustered(n=30)

    class Split(torch.utils.data.Dataset):
        labels, query, gallery = y, None, None

        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return torch.from_numpy(x[i]), int(y[i]), i

    class Model(torch.nn.Module):
        def forward(self, images):
            return {"embeds": images}

    keys = ["e_recall@1", "rho_spectrum@0"]
    common = dict(batch_size=8, num_workers=0, device=torch.device("cpu"), name="Test")
    common["precision"] = Precision(False, torch.device("cpu"))
    scalars = evaluate_dataset(metrics.Evaluator(keys), Model(), Split(), **common)
    everything = evaluate_dataset(
        metrics.Evaluator(keys), Model(), Split(), with_arrays=True, **common
    )
    assert list(scalars) == ["e_recall@1"] and list(everything) == keys
    assert len(everything["rho_spectrum@0"]) == 6
