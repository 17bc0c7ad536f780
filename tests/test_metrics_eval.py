"""``eval.py --embeddings`` serves every registered metric that does not need the model."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import eval as eval_cli
import metrics


def every_key() -> list[str]:
    """Every registered metric computable from embeddings alone, each mode of those with one."""
    keys = []
    for name, cls in metrics.METRICS.items():
        if "model" in cls.requires:
            continue
        if name == "dists":
            keys += ["dists@intra", "dists@inter", "dists@intra_over_inter"]
        elif name.startswith("rho_spectrum"):
            keys += [f"{name}@{mode}" for mode in (0, 1, 2, -1, 5)]
        elif cls.arg_name == "k":
            keys += [f"{name}@2"] + ([name] if name == "mrr" else [])
        else:
            keys.append(name)
    return keys


ARRAY_KEYS = {"rho_spectrum@0", "rho_spectrum_revisit@0"}


@pytest.mark.parametrize("with_masks", [False, True])
def test_eval_embeddings_serves_every_metric(tmp_path, with_masks):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 5)
    embeddings = (rng.normal(size=(6, 8))[labels] + 0.1 * rng.normal(size=(30, 8))).astype(
        np.float32
    )
    arrays = {"embeddings": embeddings, "labels": labels}
    if with_masks:
        arrays.update(query=np.arange(30) % 2 == 0, gallery=np.arange(30) % 2 == 1)
    np.savez(tmp_path / "E.npz", **arrays)
    keys = every_key()
    output = tmp_path / "R.json"
    args = ["--embeddings", str(tmp_path / "E.npz"), "--evaluation_metrics", *keys]
    assert eval_cli.main([*args, "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    assert list(results) == keys
    assert all(isinstance(results[key], float) for key in keys if key not in ARRAY_KEYS)
    # The whole normalised spectrum: min(N, D) = 8 values (the reference's CPU path: D − 1).
    assert len(results["rho_spectrum@0"]) == 8 and len(results["rho_spectrum_revisit@0"]) == 7
    assert sum(results["rho_spectrum@0"]) == pytest.approx(1.0)
    # Well-separated classes: every retrieval score is perfect.
    for key in ("e_recall@2", "c_recall@2", "mAP_R", "precision_at_1", "mrr", "r_precision"):
        assert results[key] == pytest.approx(1.0), key
    # The reference's mAP caps a perfect ranking at R_q / (R_q + 1).
    query = arrays.get("query", np.ones(30, bool))
    gallery = arrays.get("gallery", np.ones(30, bool))
    relevant = np.array(
        [(gallery & (labels == labels[q])).sum() - gallery[q] for q in np.flatnonzero(query)]
    )
    assert results["mAP_c"] == pytest.approx(np.mean(relevant / (relevant + 1)))
    assert 0.5 < results["nmi"] <= 1 and 0 < results["f1"] <= 1


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"labels": np.arange(4.0)}, r"has labels float64 \(4,\) for 4 embeddings"),
        ({"embeddings": np.full((4, 2), np.nan)}, "has NaN or infinite embeddings"),
        ({"embeddings": np.ones((4, 2), np.complex64)}, "dtype complex64, not real numbers"),
        ({"embeddings": np.ones((4, 0), np.float32)}, r"shape \(4, 0\) \(at least 2×1"),
        ({"embeddings": np.ones((0, 2), np.float32), "labels": np.arange(0)}, r"shape \(0, 2\)"),
        ({"embeddings": np.array([None] * 8, object).reshape(4, 2)}, "as Python objects"),
        ({"query": np.zeros(4, bool), "gallery": np.ones(4, bool)}, "an all-False 'query' mask"),
    ],
)
def test_eval_embeddings_rejects_bad_arrays(tmp_path, capsys, arrays, message):
    content = {"embeddings": np.eye(4, 2, dtype=np.float32), "labels": np.arange(4)} | arrays
    np.savez(tmp_path / "E.npz", **content)
    assert eval_cli.main(["--embeddings", str(tmp_path / "E.npz")]) == 2
    err = capsys.readouterr().err
    assert re.search(f"error: --embeddings: .*{message}", err), err
    assert len(err.strip().splitlines()) == 1


def test_eval_embeddings_rejects_a_npy_file(tmp_path, capsys):
    np.save(tmp_path / "E.npy", np.eye(4, 2))
    (tmp_path / "E.npy").rename(tmp_path / "E.npz")
    assert eval_cli.main(["--embeddings", str(tmp_path / "E.npz")]) == 2
    assert "is a single .npy array of shape (4, 2)" in capsys.readouterr().err


def test_eval_embeddings_seeds_kmeans_with_seed(tmp_path, monkeypatch):
    seeds = []
    real = metrics.Evaluator.__init__

    def recording(self, keys, **kwargs):
        seeds.append(kwargs.get("kmeans_seed"))
        real(self, keys, **kwargs)

    monkeypatch.setattr(metrics.Evaluator, "__init__", recording)
    labels = np.repeat(np.arange(3), 4)
    np.savez(tmp_path / "E.npz", embeddings=np.eye(12, 4, dtype=np.float32), labels=labels)
    for extra in ([], ["--seed", "5"]):
        args = ["--embeddings", str(tmp_path / "E.npz"), "--evaluation_metrics", "nmi", *extra]
        assert eval_cli.main(args) == 0
    assert seeds == [0, 5]
