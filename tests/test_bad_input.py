"""Bad input: one line naming the flag or file, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import batch_mining
import eval as eval_cli
import main
from batch_mining.base import BatchMiner
from defenses.base import TrainingStep
from tests import dataset_layouts
from tests.conftest import ROOT
from utilities.checkpoint import load_checkpoint

FAST = ["--num_workers", "0", "--savename", "run", "--no_train_metrics"]


def fails_with(capsys, argv: list[str], *fragments: str, entry=main.main) -> str:
    capsys.readouterr()
    assert entry(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


@pytest.mark.parametrize(
    ("flag", "typo", "closest"),
    [
        ("--loss", "marign", "margin"),
        ("--batch_mining", "semihrad", "semihard"),
        ("--arch", "resnet5O_frozen", "resnet50_frozen"),
        ("--dataset", "cub2000", "cub200"),
        ("--data_sampler", "class_randm", "class_random"),
        ("--evaluation_metrics", "e_recal@1", "e_recall"),
    ],
)
def test_unknown_registry_key_names_the_flag_and_closest_key(capsys, flag, typo, closest):
    fails_with(capsys, [flag, typo], flag, typo, repr(closest))


def test_unknown_storage_metric(capsys):
    fails_with(
        capsys,
        ["--storage_metrics", "nmi", "--evaluation_metrics", "e_recall@1"],
        "--storage_metrics",
        "nmi",
    )


def test_bad_metric_argument(capsys):
    fails_with(capsys, ["--evaluation_metrics", "e_recall@x"], "--evaluation_metrics", "e_recall@x")


def test_batch_size_not_divisible_by_samples_per_class(capsys):
    fails_with(capsys, ["--bs", "30", "--samples_per_class", "4"], "--bs", "30", "4")


def test_miner_the_loss_does_not_allow(capsys, tmp_path, monkeypatch):
    @batch_mining.MINERS.register("test_tuples")
    class TupleMiner(BatchMiner):
        """A miner of another output kind, registered only for this test."""

        output = "tuples"

        def __call__(self, embeds, labels):
            raise AssertionError("never called")

    try:
        fails_with(
            capsys,
            ["--loss", "triplet", "--batch_mining", "test_tuples", "--save_path", str(tmp_path)],
            "--batch_mining",
            "test_tuples",
            "triplet",
        )
    finally:
        batch_mining.MINERS._entries.pop("test_tuples")


def test_missing_dataset_folder_names_path_and_layout(capsys, tmp_path):
    err = fails_with(
        capsys,
        ["--dataset", "cub200", "--source_path", str(tmp_path), "--save_path", str(tmp_path / "o")],
        "--source_path",
        str(tmp_path / "cub200"),
        "images/",
    )
    assert "NNN" in err or "Class" in err


def test_corrupt_image_names_the_file(capsys, tmp_path):
    source = dataset_layouts.make_cub200(tmp_path / "data")
    victim = sorted((source / "cub200" / "images").rglob("*.jpg"))[0]
    victim.write_bytes(b"this is not a jpeg")
    fails_with(
        capsys,
        [
            *FAST[:-1],
            "--dataset",
            "cub200",
            "--source_path",
            str(source),
            "--arch",
            "c2f2_normalize",
            "--bs",
            "8",
            "--n_epochs",
            "1",
            "--save_path",
            str(tmp_path / "o"),
        ],
        str(victim),
    )


def test_checkpoint_that_is_not_ours(capsys, tmp_path):
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {}}, foreign)
    fails_with(
        capsys,
        ["--test_path", str(foreign)],
        "--test_path",
        str(foreign),
        "not a checkpoint",
        entry=eval_cli.main,
    )
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00garbage")
    fails_with(capsys, ["--test_path", str(garbage)], str(garbage), entry=eval_cli.main)
    fails_with(
        capsys, ["--test_path", str(tmp_path / "absent.pth")], "absent.pth", entry=eval_cli.main
    )


def test_bad_embeddings_file(capsys, tmp_path):
    import numpy as np

    npz = tmp_path / "E.npz"
    np.savez(npz, embeddings=np.zeros((4, 2), np.float32))
    fails_with(capsys, ["--embeddings", str(npz)], "--embeddings", "labels", entry=eval_cli.main)


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_last_checkpoint(
    capsys, tmp_path, monkeypatch
):
    original = TrainingStep.update
    calls = {"n": 0}

    def poisoned(self, loss):
        calls["n"] += 1
        return original(self, loss * float("nan") if calls["n"] == steps_per_epoch + 3 else loss)

    steps_per_epoch = 1201 // 112  # digits: 1,201 training images
    monkeypatch.setattr(TrainingStep, "update", poisoned)
    fails_with(
        capsys,
        [*FAST, "--n_epochs", "2", "--save_path", str(tmp_path)],
        "epoch 2, step 3",
        "non-finite loss",
    )
    checkpoint = load_checkpoint(tmp_path / "digits" / "run" / "checkpoint_last.pth", "--resume")
    assert checkpoint["epoch"] == 1


def test_cli_exit_status_is_2_without_traceback():
    result = subprocess.run(
        [sys.executable, "main.py", "--loss", "nope"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "--loss" in result.stderr


def test_unknown_flag_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main.main(["--no_such_flag"])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
