"""Train, checkpoint and evaluate on every dataset layout and every architecture.

The datasets are tiny copies of each real on-disk layout (``tests/dataset_layouts.py``); each
run trains one epoch from ``main.py`` and evaluates its checkpoint with ``eval.py``, which must
rebuild model and test data from the checkpoint alone and reproduce the final test metrics.
"""

from __future__ import annotations

import json
import math

import pytest

import eval as eval_cli
import main
from tests.dataset_layouts import make_dataset
from utilities.checkpoint import load_checkpoint

METRIC_KEYS = ["e_recall@1", "e_recall@2", "nmi", "f1", "mAP_R"]


def train_and_evaluate(tmp_path, dataset: str, arch: str, *extra: str) -> dict[str, float]:
    source = make_dataset(dataset, tmp_path / "data")
    flags = [
        "--dataset", dataset, "--source_path", str(source), "--arch", arch,
        "--n_epochs", "1", "--bs", "4", "--samples_per_class", "2", "--num_workers", "0",
        "--not_pretrained", "--embed_dim", "16", "--evaluation_metrics", *METRIC_KEYS,
        "--save_path", str(tmp_path / "runs"), "--savename", "run", *extra,
    ]  # fmt: skip
    final = main.train(flags)
    run_dir = tmp_path / "runs" / dataset / "run"
    checkpoint = run_dir / "checkpoint_last.pth"
    assert load_checkpoint(checkpoint, "--test_path")["epoch"] == 1
    output = tmp_path / "R.json"
    assert eval_cli.main(["--test_path", str(checkpoint), "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    assert list(results) == METRIC_KEYS
    for key in METRIC_KEYS:
        assert math.isfinite(final[key]), (key, final)
        assert results[key] == pytest.approx(final[key], abs=1e-6), key
    return final


@pytest.mark.parametrize(
    "dataset", ["cub200", "cars196", "online_products", "inshop", "mnist", "fashion"]
)
def test_every_dataset_layout_trains_and_evaluates(tmp_path, dataset):
    final = train_and_evaluate(tmp_path, dataset, "c2f2_normalize")
    assert 0.0 <= final["e_recall@1"] <= final["e_recall@2"] <= 1.0


@pytest.mark.parametrize(
    "arch", ["resnet18_frozen_normalize", "resnet50_normalize", "bninception_frozen", "googlenet"]
)
def test_every_architecture_trains_and_evaluates(tmp_path, arch):
    train_and_evaluate(tmp_path, "cub200", arch, "--augmentation", "base")


def test_validation_split_is_evaluated_and_checkpointed(tmp_path):
    train_and_evaluate(
        tmp_path, "online_products", "c2f2_normalize", "--use_tv_split", "--tv_split_perc", "0.6"
    )
    run_dir = tmp_path / "runs" / "online_products" / "run"
    assert (run_dir / "CSV_Logs" / "Val.csv").is_file()
    assert (run_dir / "checkpoint_Val_e_recall@1.pth").is_file()


def test_resume_continues_on_an_image_folder_layout(tmp_path):
    train_and_evaluate(tmp_path, "inshop", "c2f2_normalize")
    checkpoint = tmp_path / "runs" / "inshop" / "run" / "checkpoint_last.pth"
    final = main.train(["--resume", str(checkpoint), "--n_epochs", "2", "--num_workers", "0"])
    payload = load_checkpoint(checkpoint, "--resume")
    assert payload["epoch"] == 2
    assert len(payload["history"]["Test"]["e_recall@1"]) == 2
    assert payload["history"]["Test"]["e_recall@1"][-1] == pytest.approx(final["e_recall@1"])
