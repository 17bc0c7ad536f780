"""End to end: train on the bundled digits, evaluate the checkpoint, logs, AMP, W&B offline."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import eval as eval_cli
import main
from tests.conftest import ROOT
from utilities.checkpoint import load_checkpoint

FAST = ["--num_workers", "0", "--savename", "run"]


def run_main(tmp_path, *flags: str) -> tuple[dict[str, float], object]:
    final = main.train([*FAST, "--save_path", str(tmp_path), *flags])
    return final, tmp_path / "digits" / "run"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """Two epochs of the default job (digits, c2f2_normalize, margin + distance)."""
    root = tmp_path_factory.mktemp("trained")
    final, run_dir = run_main(root, "--n_epochs", "2")
    return final, run_dir


def test_default_job_learns_and_writes_its_run_folder(trained_run):
    final, run_dir = trained_run
    assert set(final) == {"e_recall@1", "e_recall@2", "e_recall@4", "nmi", "f1", "mAP_R"}
    assert final["e_recall@1"] > 0.8, final  # chance level on ten classes is ~0.1
    assert final["e_recall@4"] >= final["e_recall@2"] >= final["e_recall@1"]
    for name in (
        "checkpoint_last.pth",
        "checkpoint_Test_e_recall@1.pth",
        "checkpoint_Train_e_recall@1.pth",
        "options.json",
        "training_summary.json",
        "CSV_Logs/Test.csv",
        "CSV_Logs/Train.csv",
        "Progression_Plots/Test.png",
        "Progression_Plots/Train.png",
    ):
        assert (run_dir / name).is_file(), name
    rows = (run_dir / "CSV_Logs" / "Test.csv").read_text().strip().splitlines()
    assert rows[0].split(",")[0] == "epoch" and len(rows) == 3
    options = json.loads((run_dir / "options.json").read_text())
    assert options["arch"] == "c2f2_normalize" and options["dataset"] == "digits"


def test_last_checkpoint_holds_everything_to_resume(trained_run):
    _, run_dir = trained_run
    payload = load_checkpoint(run_dir / "checkpoint_last.pth", "--resume")
    assert payload["kind"] == "last" and payload["epoch"] == 2
    for key in ("model", "criterion", "optimizer", "scheduler", "sampler", "rng", "history"):
        assert key in payload, key
    assert isinstance(payload["options"], dict) and payload["options"]["loss"] == "margin"
    assert "beta" in "".join(payload["criterion"])  # margin's learnable β travels with it
    assert len(payload["history"]["Test"]["e_recall@1"]) == 2


def test_eval_reproduces_the_final_test_metrics(trained_run, tmp_path, capsys):
    final, run_dir = trained_run
    output = tmp_path / "R.json"
    code = eval_cli.main(
        ["--test_path", str(run_dir / "checkpoint_last.pth"), "--output", str(output)]
    )
    assert code == 0
    results = json.loads(output.read_text())
    assert {"e_recall@1", "nmi", "f1", "mAP_R"} <= set(results)
    for name, value in final.items():
        assert results[name] == pytest.approx(value, abs=1e-6), name
    assert "e_recall@1" in capsys.readouterr().out


def test_eval_selected_metrics_from_best_checkpoint(trained_run, tmp_path):
    _, run_dir = trained_run
    output = tmp_path / "R.json"
    checkpoint = run_dir / "checkpoint_Test_e_recall@1.pth"
    args = ["--test_path", str(checkpoint), "--evaluation_metrics", "e_recall@8", "nmi"]
    assert eval_cli.main([*args, "--output", str(output)]) == 0
    assert set(json.loads(output.read_text())) == {"e_recall@8", "nmi"}


def make_npz(path, with_masks: bool) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 5)
    centres = rng.normal(size=(6, 8))
    embeddings = (centres[labels] + 0.1 * rng.normal(size=(30, 8))).astype(np.float32)
    arrays = {"embeddings": embeddings, "labels": labels}
    if with_masks:
        query = np.zeros(30, dtype=bool)
        query[::2] = True
        arrays.update(query=query, gallery=~query)
    np.savez(path, **arrays)


@pytest.mark.parametrize("with_masks", [False, True])
def test_eval_precomputed_embeddings(tmp_path, with_masks):
    npz, output = tmp_path / "E.npz", tmp_path / "R.json"
    make_npz(npz, with_masks)
    metric_keys = ["e_recall@1", "e_recall@4", "mAP_R", "nmi"]
    args = ["--embeddings", str(npz), "--evaluation_metrics", *metric_keys, "--output", str(output)]
    assert eval_cli.main(args) == 0
    results = json.loads(output.read_text())
    assert list(results) == metric_keys
    # Well separated clusters: retrieval is perfect under both protocols.
    assert results["e_recall@1"] == 1.0 and results["mAP_R"] == 1.0


def test_amp_on_cpu_trains(tmp_path):
    final, _ = run_main(tmp_path, "--n_epochs", "1", "--amp", "--no_train_metrics")
    assert all(math.isfinite(v) for v in final.values())


def test_no_train_metrics_skips_the_train_split(tmp_path):
    _, run_dir = run_main(tmp_path, "--n_epochs", "1", "--no_train_metrics")
    train_columns = (run_dir / "CSV_Logs" / "Train.csv").read_text().splitlines()[0].split(",")
    assert train_columns == ["epoch", "loss", "time"]
    assert not (run_dir / "checkpoint_Train_e_recall@1.pth").exists()


def test_fc_lr_and_loss_parameters_get_their_own_groups(tmp_path):
    import architectures
    import criteria
    import parameters
    from utilities.optimization import build_optimizer

    opt, _ = parameters.parse_args(["--fc_lr", "0.01"])
    opt.n_classes = 10
    model, criterion = architectures.build(opt), criteria.build(opt)
    groups = build_optimizer(opt, model, criterion).param_groups
    assert [g["lr"] for g in groups] == [opt.lr, 0.01, opt.loss_margin_beta_lr]
    assert groups[2]["weight_decay"] == 0
    head = {id(p) for p in model.last_linear.parameters()}
    assert {id(p) for p in groups[1]["params"]} == head


def test_wandb_offline_without_a_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc key
    monkeypatch.setenv("WANDB_SILENT", "true")
    _, run_dir = run_main(tmp_path, "--n_epochs", "1", "--no_train_metrics", "--log_online")
    assert any((run_dir / "wandb").glob("offline-run-*")), list((run_dir / "wandb").iterdir())


def test_help_lists_every_flag_grouped():
    result = subprocess.run(
        [sys.executable, "main.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    for flag in (
        "--kernels",
        "--num_workers",
        "--device",
        "--resume",
        "--amp",
        "--loss_margin_beta",
        "--loss_triplet_margin",
        "--loss_contrastive_neg_margin",
        "--miner_distance_lower_cutoff",
        "--samples_per_class",
    ):
        assert flag in result.stdout, flag
    for title in ("training:", "batch creation:", "loss-specific:", "miner-specific:"):
        assert title in result.stdout, title


def test_device_auto_is_cpu_without_cuda():
    import parameters
    from utilities.device import select_device

    opt, _ = parameters.parse_args([])
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device(opt).type == expected


def test_undefined_metric_is_written_as_json_null(tmp_path):
    npz, output = tmp_path / "E.npz", tmp_path / "R.json"
    # Every label occurs once: no query has a relevant item, so MAP@R is undefined.
    np.savez(npz, embeddings=np.eye(4, dtype=np.float32), labels=np.arange(4))
    args = ["--embeddings", str(npz), "--evaluation_metrics", "e_recall@1", "mAP_R"]
    assert eval_cli.main([*args, "--output", str(output)]) == 0
    results = json.loads(output.read_text())  # strict: NaN would not parse as standard JSON
    assert results == {"e_recall@1": 0.0, "mAP_R": None}
    assert "NaN" not in output.read_text()


def test_metrics_run_on_the_requested_device():
    from utilities.embedding import evaluate_dataset
    from utilities.precision import Precision

    class RecordingEvaluator:
        def compute(self, embeddings, labels, query=None, gallery=None, **context):
            self.devices = (embeddings.device.type, labels.device.type)
            return {}

    class Images(torch.utils.data.Dataset):
        labels, query, gallery = np.arange(4), None, None

        def __len__(self):
            return 4

        def __getitem__(self, index):
            return torch.full((3,), float(index)), index, index

    evaluator, cpu = RecordingEvaluator(), torch.device("cpu")
    options = dict(batch_size=2, num_workers=0, device=cpu, precision=Precision(False, cpu))
    model = torch.nn.Sequential()
    model.forward = lambda x: {"embeds": x}
    evaluate_dataset(evaluator, model, Images(), name="Test", **options)
    assert evaluator.devices == ("cpu", "cpu")
    evaluate_dataset(
        evaluator, model, Images(), name="Test", metric_device=torch.device("meta"), **options
    )
    assert evaluator.devices == ("meta", "meta")
