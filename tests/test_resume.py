"""A run killed with SIGKILL after its first epoch, then resumed, ends like an uninterrupted one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, straight_and_killed_runs
from utilities.checkpoint import load_checkpoint

FLAGS = ["--n_epochs", "3", "--seed", "3", "--num_workers", "0", "--savename", "run"]


def main_command(*flags: str) -> list[str]:
    return [sys.executable, "main.py", *flags]


def history(run_dir):
    return load_checkpoint(run_dir / "checkpoint_last.pth", "--resume")["history"]


@pytest.mark.slow
def test_sigkill_after_first_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    straight_dir, run_dir = straight_and_killed_runs(FLAGS, tmp_path)
    interrupted = load_checkpoint(run_dir / "checkpoint_last.pth", "--resume")
    assert interrupted["epoch"] == 1, "the kill must land before epoch 2 finished"

    resumed = subprocess.run(
        main_command("--resume", str(run_dir / "checkpoint_last.pth")),
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    assert "epoch 2/3" in resumed.stdout and "epoch 1/3" not in resumed.stdout

    expected, actual = history(straight_dir), history(run_dir)
    assert set(actual) == set(expected)
    for split in expected:
        for column in expected[split]:
            if column == "time":
                continue
            assert actual[split][column] == expected[split][column], (split, column)
    csv_rows = (run_dir / "CSV_Logs" / "Test.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 4  # header + 3 epochs, no duplicates after the resume


def test_resume_refuses_changed_options(tmp_path, capsys):
    import main

    assert (
        main.main(
            [*FLAGS[2:], "--n_epochs", "1", "--no_train_metrics", "--save_path", str(tmp_path)]
        )
        == 0
    )
    checkpoint = tmp_path / "digits" / "run" / "checkpoint_last.pth"
    capsys.readouterr()
    assert main.main(["--resume", str(checkpoint), "--lr", "0.5"]) == 2
    assert "--lr: a resumed run keeps the options" in capsys.readouterr().err
    # More epochs is allowed: the run continues from epoch 2.
    assert main.main(["--resume", str(checkpoint), "--n_epochs", "2"]) == 0
    assert load_checkpoint(checkpoint, "--resume")["epoch"] == 2


def test_resume_refuses_a_best_checkpoint(tmp_path, capsys):
    import main

    assert (
        main.main(
            [*FLAGS[2:], "--n_epochs", "1", "--no_train_metrics", "--save_path", str(tmp_path)]
        )
        == 0
    )
    best = tmp_path / "digits" / "run" / "checkpoint_Test_e_recall@1.pth"
    capsys.readouterr()
    assert main.main(["--resume", str(best)]) == 2
    assert "resume from checkpoint_last.pth" in capsys.readouterr().err


def test_resume_of_a_checkpoint_older_than_a_flag(tmp_path):
    """A checkpoint written before --defense existed resumes with the flag's default."""
    import main
    from utilities.checkpoint import save_checkpoint

    assert main.main([*FLAGS[2:], "--n_epochs", "1", "--no_train_metrics",
                      "--save_path", str(tmp_path)]) == 0  # fmt: skip
    checkpoint = tmp_path / "digits" / "run" / "checkpoint_last.pth"
    payload = load_checkpoint(checkpoint, "--resume")
    for name in [n for n in payload["options"] if n.startswith("defense")]:
        del payload["options"][name]
    content = {k: v for k, v in payload.items() if k not in ("format", "version", "kind")}
    save_checkpoint(checkpoint, "last", **content)
    assert main.main(["--resume", str(checkpoint), "--n_epochs", "2"]) == 0
    assert load_checkpoint(checkpoint, "--resume")["options"]["defense"] == "none"
