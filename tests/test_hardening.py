"""Bad or odd input, as a new user types it: one line naming the flag or file, exit status 2, no
traceback, nothing lost. One subprocess per class of fault (the real exit status and stderr),
the many variants of each in-process."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import eval as eval_cli
import main
import parameters
from tests import dataset_layouts
from tests.conftest import ROOT
from utilities import online_logging
from utilities.checkpoint import load_checkpoint, save_checkpoint
from utilities.files import FILE_MODE
from utilities.logger import RunLog, summary

FAST = [
    "--num_workers",
    "0",
    "--no_train_metrics",
    "--evaluation_metrics",
    "e_recall@1",
    "dists@intra",
    "--storage_metrics",
    "e_recall@1",
    "dists@intra",
]


def run(program: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, program, *flags], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def assert_one_line(result: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """One epoch of the default digits job."""
    root = tmp_path_factory.mktemp("trained")
    main.train([*FAST, "--n_epochs", "1", "--save_path", str(root), "--savename", "run"])
    return str(root / "digits" / "run" / "checkpoint_last.pth")


# 1. Numbers are range-checked before any work starts.


def test_numbers_out_of_range_subprocess(tmp_path):
    assert_one_line(
        run("main.py", "--embed_dim", "0", "--save_path", str(tmp_path)),
        "argument --embed_dim: expected an integer >= 1, got '0'",
    )
    assert not any(tmp_path.iterdir())
    assert_one_line(
        run("eval.py", "--embeddings", "E.npz", "--num_workers", "-1"),
        "argument --num_workers/--kernels: expected an integer >= 0",
    )


def test_a_batch_without_negatives_is_refused_before_the_run_folder(tmp_path, capsys):
    flags = [
        "--bs",
        "2",
        "--samples_per_class",
        "2",
        "--loss",
        "triplet",
        "--batch_mining",
        "semihard",
        "--save_path",
        str(tmp_path),
    ]
    assert main.main(flags) == 2
    assert "--bs: a batch of 2 is one class" in capsys.readouterr().err
    assert (
        main.main(["--loss", "triplet", "--batch_mining", "npair", "--save_path", str(tmp_path)])
        == 2
    )
    assert not any(tmp_path.iterdir()), "a failed start leaves no run folder"


def test_notes_for_settings_that_run_but_not_as_meant(capsys):
    parameters.parse_args(["--loss", "proxy_anchor", "--batch_mining", "semihard"])
    assert (
        "note: --batch_mining semihard is ignored: --loss proxy_anchor" in capsys.readouterr().err
    )
    parameters.parse_args(
        ["--loss", "triplet", "--batch_mining", "semihard", "--samples_per_class", "1"]
    )
    assert "note: --samples_per_class 1" in capsys.readouterr().err


# 2. Every input file is validated where it is read.


def test_bad_files_subprocess(tmp_path, checkpoint):
    swipe = tmp_path / "S.json"
    swipe.write_text(json.dumps({"CA:pm=+:W=1": [{"CA+:prank": 0.5}, {"CA+:prank": "high"}]}))
    assert_one_line(run("eval.py", "--ers", str(swipe)), "'CA:pm=+:W=1' has CA+:prank = 'high'")
    payload = load_checkpoint(checkpoint, "--test_path")
    del payload["model"]
    tampered = tmp_path / "tampered.pth"
    save_checkpoint(
        tampered,
        "last",
        **{k: v for k, v in payload.items() if k not in ("format", "version", "kind")},
    )
    assert_one_line(run("eval.py", "--test_path", str(tampered)), "is damaged: model missing")


def test_a_checkpoint_with_other_shapes_names_the_file(tmp_path, checkpoint, capsys):
    payload = load_checkpoint(checkpoint, "--test_path")
    payload["model"]["last_linear.weight"] = torch.zeros(3, 3)
    content = {k: v for k, v in payload.items() if k not in ("format", "version", "kind")}
    save_checkpoint(tmp_path / "shapes.pth", "last", **content)
    assert eval_cli.main(["--test_path", str(tmp_path / "shapes.pth")]) == 2
    err = capsys.readouterr().err
    assert "the model state in" in err and "does not fit this run" in err


def test_idx_labels_outside_the_ten_classes(tmp_path, capsys):
    source = dataset_layouts.make_mnist(tmp_path, gz=False)
    labels = source / "mnist" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(dataset_layouts.idx_bytes(np.full(20, 12, np.uint8)))
    assert (
        main.main(
            [
                "--dataset",
                "mnist",
                "--source_path",
                str(source),
                *FAST,
                "--save_path",
                str(tmp_path / "runs"),
            ]
        )
        == 2
    )
    assert "20 labels outside 0..9 (e.g. 12)" in capsys.readouterr().err


def test_resume_or_eval_on_data_with_another_class_count(tmp_path, capsys):
    six = dataset_layouts.make_cub200(tmp_path / "six", n_classes=6)
    ten = dataset_layouts.make_cub200(tmp_path / "ten", n_classes=10)
    flags = [
        "--dataset",
        "cub200",
        "--arch",
        "c2f2_normalize",
        "--bs",
        "6",
        "--n_epochs",
        "1",
        "--savename",
        "run",
        "--save_path",
        str(tmp_path / "runs"),
        *FAST,
    ]
    assert main.main([*flags, "--source_path", str(six)]) == 0
    last = tmp_path / "runs" / "cub200" / "run" / "checkpoint_last.pth"
    capsys.readouterr()
    assert main.main(["--resume", str(last), "--n_epochs", "2", "--source_path", str(ten)]) == 2
    assert "has 5 classes, the checkpoint" in capsys.readouterr().err
    assert eval_cli.main(["--test_path", str(last), "--source_path", str(ten)]) == 2
    assert "has 5 classes (15 images)" in capsys.readouterr().err


def test_a_corrupt_test_image_stops_the_run_before_training(tmp_path):
    source = dataset_layouts.make_cub200(tmp_path / "data")
    test_image = sorted((source / "cub200" / "images").rglob("*.jpg"))[-1]  # classes 4-6: test
    test_image.write_bytes(test_image.read_bytes()[:80])
    result = run(
        "main.py",
        "--dataset",
        "cub200",
        "--source_path",
        str(source),
        "--arch",
        "c2f2_normalize",
        "--bs",
        "6",
        "--save_path",
        str(tmp_path / "runs"),
        *FAST,
    )
    assert_one_line(result, str(test_image), "corrupt or unreadable image")
    assert "epoch 1/" not in result.stdout


# 3. No result is lost.


def test_unwritable_outputs_fail_before_the_work(tmp_path, checkpoint):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run("eval.py", "--test_path", checkpoint, "--output", str(blocker / "R.json"))
    assert_one_line(result, "--output: cannot write", "is a file, not a folder")
    assert "e_recall@1" not in result.stdout  # refused before evaluating
    result = run("main.py", "--savename", "../escape", "--save_path", str(tmp_path))
    assert_one_line(result, "--savename: '../escape' would put the run folder outside")


def test_a_failed_write_after_the_work_saves_a_fallback(tmp_path, checkpoint, capsys, monkeypatch):
    import utilities.run_setup

    target = tmp_path / "out" / "R.json"
    real = utilities.run_setup.atomic_write_text

    def failing(path, text):
        if pathlib_name(path) == "R.json":
            raise OSError(28, "No space left on device")
        real(path, text)

    monkeypatch.setattr(utilities.run_setup, "atomic_write_text", failing)
    monkeypatch.chdir(tmp_path)
    assert eval_cli.main(["--test_path", checkpoint, "--output", str(target)]) == 2
    captured = capsys.readouterr()
    assert "e_recall@1" in captured.out  # the table was printed
    message = captured.err.strip()
    assert "No space left on device" in message and "the result is saved in" in message
    fallback = message.rsplit("the result is saved in ", 1)[1]
    assert json.loads(open(fallback).read())["e_recall@1"] > 0  # noqa: SIM115


def pathlib_name(path) -> str:
    return os.path.basename(str(path))


def test_a_partial_swipe_is_recorded_and_keeps_the_full_swipes_file(checkpoint, capsys):
    flags = ["--test_path", checkpoint, "--swipe", "rob28", "--attack_bs", "8"]
    full = f"{checkpoint}.rob28.json"
    with open(full, "w") as handle:
        handle.write("{}")
    assert eval_cli.main([*flags, "--attack_batches", "1"]) == 0
    assert open(full).read() == "{}"  # noqa: SIM115
    partial = json.loads(open(f"{checkpoint}.rob28.first1.json").read())  # noqa: SIM115
    assert partial["_subset"] == {"attack_batches": 1, "attack_bs": 8}
    capsys.readouterr()
    assert eval_cli.main(["--ers", f"{checkpoint}.rob28.first1.json"]) == 0
    assert "a partial swipe: the first 1 batches of 8" in capsys.readouterr().out


def test_files_get_the_umask_and_stale_temporaries_are_cleaned(tmp_path, checkpoint, capsys):
    run_dir = os.path.dirname(checkpoint)
    assert os.stat(checkpoint).st_mode & 0o777 == FILE_MODE
    stale = os.path.join(run_dir, ".checkpoint_last.pth.abc123.tmp")
    with open(stale, "wb") as handle:
        handle.write(b"half a checkpoint")
    assert main.main(["--resume", checkpoint, "--n_epochs", "2"]) == 0
    assert not os.path.exists(stale)


# 4. Resources.


def test_an_attack_larger_than_the_split_is_refused_with_the_largest_that_fits(checkpoint):
    result = run("eval.py", "--test_path", checkpoint, "--attack", "QA:pm=+:M=100000")
    line = assert_one_line(result, "QA:pm=+:M=100000", "the largest M that fits is")
    largest = int(line.rsplit(" ", 1)[1])
    assert 0 < largest <= 595  # 596 test digits; less if the free memory says so


def test_wandb_without_network_falls_back_to_offline(tmp_path, monkeypatch, capsys):
    import wandb

    real = wandb.init

    def no_network(*args, **kwargs):
        if kwargs.get("mode") == "online":
            raise TimeoutError("timed out waiting for the server")
        return real(*args, **kwargs)

    monkeypatch.setattr(wandb, "init", no_network)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HOME", str(tmp_path))
    opt = parameters.parse_args(["--log_online", "--wandb_key", "x" * 40])[0]
    logger = online_logging.OnlineLogger(opt, tmp_path, None)
    logger.finish()
    out = capsys.readouterr().out
    assert "W&B: cannot reach the server (TimeoutError" in out and "logging offline" in out
    assert any((tmp_path / "wandb").glob("offline-run-*"))


def test_ctrl_c_says_where_the_last_checkpoint_is(tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "main.py",
            *FAST,
            "--n_epochs",
            "50",
            "--savename",
            "run",
            "--save_path",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:
        if line.startswith("epoch 1/"):
            process.send_signal(signal.SIGINT)
            break
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    last = tmp_path / "digits" / "run" / "checkpoint_last.pth"
    assert lines[0].startswith("interrupted: the last checkpoint is") and str(last) in lines[0]


# 5. Summaries.


def test_summary_reports_the_best_epoch_with_every_metric_and_lower_is_better():
    log = RunLog("unused")
    for epoch, (recall, intra, loss) in enumerate(
        [(0.5, 0.4, 1.0), (0.8, 0.3, 0.5), (math.nan, 0.1, 0.2), (0.7, 0.2, 0.1)], start=1
    ):
        log.log("Train", epoch, {"loss": loss, "time": 10.0 * epoch})
        log.log("Test", epoch, {"e_recall@1": recall, "dists@intra": intra})
    directions = {"e_recall@1": True, "dists@intra": False}
    result = summary(log.history, ["Test"], ["e_recall@1", "dists@intra"], directions)
    best = result["Test"]["best"]
    assert best["e_recall@1"]["epoch"] == 2  # NaN never wins
    assert best["e_recall@1"]["metrics"] == {"epoch": 2.0, "e_recall@1": 0.8, "dists@intra": 0.3}
    assert best["dists@intra"]["epoch"] == 3 and not best["dists@intra"]["higher_is_better"]
    assert result["Train"]["last"] == {"epoch": 4.0, "loss": 0.1, "time": 40.0}
    assert "best" not in json.dumps(result["Train"]["best"])  # no max of loss or time
    assert not log.improves("Test", "e_recall@1", math.nan, True)
    assert log.improves("Test", "dists@intra", 0.05, False)


def test_training_summary_and_checkpoints_of_a_lower_is_better_metric(checkpoint):
    run_dir = os.path.dirname(checkpoint)
    content = json.loads(open(os.path.join(run_dir, "training_summary.json")).read())  # noqa: SIM115
    best = content["splits"]["Test"]["best"]
    assert set(best) == {"e_recall@1", "dists@intra"} and content["seed"] == 1
    assert os.path.isfile(os.path.join(run_dir, "checkpoint_Test_dists@intra.pth"))


def test_save_embeddings_round_trips_through_the_embeddings_format(tmp_path, checkpoint):
    saved, first, second = tmp_path / "E.npz", tmp_path / "A.json", tmp_path / "B.json"
    flags = ["--evaluation_metrics", "e_recall@1", "mAP_R", "nmi"]
    code = eval_cli.main(
        ["--test_path", checkpoint, "--save_embeddings", str(saved), "--output", str(first), *flags]
    )
    assert code == 0
    arrays = np.load(saved)
    assert arrays["embeddings"].shape == (596, 128) and arrays["labels"].shape == (596,)
    assert (
        eval_cli.main(["--embeddings", str(saved), "--output", str(second), *flags, "--seed", "1"])
        == 0
    )
    from_checkpoint, from_file = json.loads(first.read_text()), json.loads(second.read_text())
    for key in ("e_recall@1", "mAP_R"):
        assert from_file[key] == pytest.approx(from_checkpoint[key], abs=1e-6), key
