"""``eval.py --embeddings`` serves every registered metric that does not need the model."""

from __future__ import annotations

import json

import numpy as np
import pytest

import eval as eval_cli
import metrics


def every_key() -> list[str]:
    """One key per registered metric computable from embeddings alone (with @ where needed)."""
    keys = []
    for name, cls in metrics.METRICS.items():
        if "model" in cls.requires:
            continue
        if name == "dists":
            keys += ["dists@intra", "dists@inter", "dists@intra_over_inter"]
        elif name == "rho_spectrum":
            keys += ["rho_spectrum@2", "rho_spectrum@-1"]
        elif cls.arg_name == "k" and name != "mrr":
            keys.append(f"{name}@2")
        else:
            keys.append(name)
    return keys


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
    assert all(isinstance(results[key], float) for key in keys)
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
