"""Adversarial training end to end: the epoch log of a defense's terms, SIGKILL + ``--resume``
mid adversarial training, and ``eval.py`` on a defended checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import eval as eval_cli
import main
from tests.conftest import ROOT, straight_and_killed_runs
from utilities.checkpoint import load_checkpoint

# HM[S, g_LGA]&ICS with two PGD steps, six batches an epoch: seconds per epoch on a CPU.
HM = ["--defense", "ghmetsmi", "--loss", "triplet", "--batch_mining", "anchor_random",
      "--defense_pgditer", "2", "--bs", "200", "--num_workers", "0", "--no_train_metrics",
      "--evaluation_metrics", "e_recall@1", "mAP_R", "--savename", "run"]  # fmt: skip


@pytest.fixture(scope="module")
def defended_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("defended")
    final = main.train([*HM, "--n_epochs", "1", "--save_path", str(root)])
    return final, root / "digits" / "run"


def test_the_epoch_log_holds_every_term_of_the_step(defended_run):
    _, run_dir = defended_run
    header = (run_dir / "CSV_Logs" / "Train.csv").read_text().splitlines()[0].split(",")
    terms = ["loss", "loss_adversarial", "loss_benign", "loss_ics", "hardness_benign",
             "hardness_source", "hardness_destination", "pgd_iterations", "time"]  # fmt: skip
    for column in terms:
        assert column in header, column
    payload = load_checkpoint(run_dir / "checkpoint_last.pth", "--resume")
    previous = payload["training_step"]["previous_loss"]  # the gradual adversary's ℓ_{t−1}
    assert isinstance(previous, float) and previous != 2.0
    assert payload["options"]["defense"] == "hm" and payload["options"]["defense_ics"]


def test_eval_evaluates_and_attacks_a_defended_checkpoint(defended_run, tmp_path, capsys):
    final, run_dir = defended_run
    checkpoint = run_dir / "checkpoint_last.pth"
    output = tmp_path / "R.json"
    assert eval_cli.main(["--test_path", str(checkpoint), "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    for name, value in final.items():
        assert results[name] == pytest.approx(value, abs=1e-6), name
    swipe = ["--test_path", str(checkpoint), "--swipe", "rob28", "--attack_batches", "1",
             "--attack_bs", "8"]  # fmt: skip
    assert eval_cli.main(swipe) == 0
    printed = capsys.readouterr().out.splitlines()
    assert f"Wrote {checkpoint}.rob28.first1.json" in printed and printed[-1].startswith("ERS ")


@pytest.mark.slow
def test_sigkill_mid_adversarial_training_then_resume_matches_uninterrupted_run(tmp_path):
    flags = [*HM, "--n_epochs", "2", "--seed", "3"]
    straight_dir, run_dir = straight_and_killed_runs(flags, tmp_path)
    assert load_checkpoint(run_dir / "checkpoint_last.pth", "--resume")["epoch"] == 1
    resumed = subprocess.run(
        [sys.executable, "main.py", "--resume", str(run_dir / "checkpoint_last.pth")],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert "epoch 2/2" in resumed.stdout and "epoch 1/2" not in resumed.stdout
    expected = load_checkpoint(straight_dir / "checkpoint_last.pth", "--resume")
    actual = load_checkpoint(run_dir / "checkpoint_last.pth", "--resume")
    assert actual["training_step"] == expected["training_step"]
    for split, table in expected["history"].items():
        for column, values in table.items():
            if column != "time":
                assert actual["history"][split][column] == values, (split, column)
