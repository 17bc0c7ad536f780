"""The run lists (Revisit_Runs.sh, Robustness_Runs.sh) and their runner run_lists/common.sh.

The lists' --dry-run output is parsed by ``parameters.parse_args`` and checked against the spec's
group table (revisiting_dml.md §10) and the CVPR'22 rows (robustness.md §8.3); the runner is
driven with a stub interpreter that records its calls and writes the files main.py and eval.py
would, and once for real on digits.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

import parameters

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMMON = ROOT / "run_lists" / "common.sh"

# Revisiting DML (spec revisiting_dml.md §10): group suffix -> (loss, miner or None, arch).
NORMALIZED, UNNORMALIZED = "resnet50_frozen_normalize", "resnet50_frozen"
BASELINES = {
    "Npair": ("npair", "npair", UNNORMALIZED),
    "GenLifted": ("lifted", "lifted", UNNORMALIZED),
    "ProxyNCA": ("proxynca", None, NORMALIZED),
    "Histogram": ("histogram", None, NORMALIZED),
    "Contrastive": ("contrastive", "distance", NORMALIZED),
    "SoftTriple": ("softtriplet", None, NORMALIZED),
    "Angular": ("angular", "npair", UNNORMALIZED),
    "ArcFace": ("arcface", None, NORMALIZED),
    "Triplet_Random": ("triplet", "random", NORMALIZED),
    "Triplet_Semihard": ("triplet", "semihard", NORMALIZED),
    "Triplet_Softhard": ("triplet", "softhard", NORMALIZED),
    "Triplet_Distance": ("triplet", "distance", NORMALIZED),
    "Quadruplet_Distance": ("quadruplet", "distance", NORMALIZED),
    "Margin_b06_Distance": ("margin", "distance", NORMALIZED),
    "Margin_b12_Distance": ("margin", "distance", NORMALIZED),
    "SNR_Distance": ("snr", "distance", NORMALIZED),
    "MS": ("multisimilarity", None, NORMALIZED),
    "Softmax": ("softmax", None, NORMALIZED),
}
REGULARIZED = {
    "Contrastive": "contrastive",
    "Margin_b06_Distance": "margin",
    "Margin_b12_Distance": "margin",
    "Triplet_Distance": "triplet",
    "SNR_Distance": "snr",
}
DATASETS = {  # prefix -> (dataset, epochs, reg prefix, rho_distance cp per reg group)
    "CUB": ("cub200", 150, "CUBreg", {"Margin_b12_Distance": 0.35, "SNR_Distance": 0.3}, 0.4),
    "CARS": ("cars196", 150, "CARreg", {}, 0.35),
    "SOP": ("online_products", 100, "SOPreg", {}, 0.15),
}
NOT_ON_SOP = {"ProxyNCA", "SoftTriple"}
SOP_TWO_WORKERS = {"SOP_Margin_b12_Distance", "SOP_SNR_Distance", "SOP_MS", "SOP_Softmax"}
PAPER_METRICS = [
    "e_recall@1",
    "e_recall@2",
    "e_recall@4",
    "nmi",
    "f1",
    "mAP_c",
    "mAP_R",
    "dists@intra",
    "dists@inter",
    "dists@intra_over_inter",
    *(f"rho_spectrum_revisit@{k}" for k in (-1, 1, 2, 10)),
]
CONSTANT_OPTIONS = {  # the reference's constant flags and defaults (no LR decay: tau 1000)
    "bs": 112,
    "samples_per_class": 2,
    "lr": 1e-5,
    "decay": 4e-4,
    "embed_dim": 128,
    "data_sampler": "class_random",
    "optim": "adam",
    "tau": [1000],
    "augmentation": "base",
    "log_online": True,
    "project": "RevisitDML",
    "gpu": [0],
    "evaluation_metrics": PAPER_METRICS,
    "no_train_metrics": False,
    "storage_metrics": ["e_recall@1"],
    "defense": "none",
}


def expected_groups() -> dict[str, dict]:
    """Every group of the spec's table with what its runs must parse to."""
    groups = {}
    for prefix, (dataset, epochs, reg_prefix, cps, cp) in DATASETS.items():
        for suffix, (loss, miner, arch) in BASELINES.items():
            if prefix == "SOP" and suffix in NOT_ON_SOP:
                continue
            groups[f"{prefix}_{suffix}"] = dict(dataset=dataset, n_epochs=epochs, loss=loss,
                                                arch=arch, batch_mining=miner)  # fmt: skip
        for suffix, loss in REGULARIZED.items():
            groups[f"{reg_prefix}_{suffix}"] = dict(
                dataset=dataset, n_epochs=epochs, loss=loss, arch=NORMALIZED,
                batch_mining="rho_distance", miner_rho_distance_cp=cps.get(suffix, cp),
            )  # fmt: skip
    return groups


def options(opt, names) -> dict:
    return {name: getattr(opt, name) for name in names}


def dry_run(script: str, tmp_path: pathlib.Path, *flags: str) -> list[list[str]]:
    result = subprocess.run(
        ["bash", script, "--dry-run", *flags],
        cwd=ROOT,
        env={**os.environ, "SAVEPATH": str(tmp_path / "runs"), "DATAPATH": "/data"},
        capture_output=True,
        text=True,
        check=True,
    )
    return [shlex.split(line) for line in result.stdout.splitlines()]


def option(argv: list[str], flag: str) -> str:
    """The value of the last ``flag`` in ``argv``."""
    return argv[len(argv) - 1 - argv[::-1].index(flag) + 1]


def parse(argv: list[str]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        opt, _ = parameters.parse_args(argv)
    return opt


def test_revisit_runs_lists_67_groups_by_5_seeds(tmp_path):
    commands = dry_run("Revisit_Runs.sh", tmp_path)
    assert len(commands) == 335
    folders = {(option(c, "--dataset"), option(c, "--savename")) for c in commands}
    assert len(folders) == 335
    assert all(c[:2] == ["python", "main.py"] for c in commands)
    seeds: dict[str, set[str]] = {}
    for command in commands:
        group, seed = option(command, "--group"), option(command, "--seed")
        assert option(command, "--savename") == f"{group}_s{seed}"
        seeds.setdefault(group, set()).add(seed)
    assert seeds == {group: set("01234") for group in expected_groups()}
    assert all(option(c, "--save_path") == str(tmp_path / "runs") for c in commands)
    assert all(option(c, "--source_path") == "/data" for c in commands)


def test_revisit_runs_parse_to_the_spec_table(tmp_path):
    commands = dry_run("Revisit_Runs.sh", tmp_path)
    expected = expected_groups()
    sample = [c for c in commands if option(c, "--seed") == "0"]
    sample += [c for c in commands if option(c, "--group") == "CUB_Margin_b12_Distance"][1:]
    assert len(sample) == 67 + 4
    for command in sample:
        opt = parse(command[2:])
        group = option(command, "--group")
        want = {k: v for k, v in expected[group].items() if v is not None}  # None: no miner
        assert options(opt, want) == want, group
        assert options(opt, CONSTANT_OPTIONS) == CONSTANT_OPTIONS, group
        assert opt.num_workers == (2 if group in SOP_TWO_WORKERS else 6), group
        assert opt.seed == int(option(command, "--seed"))
        assert (opt.group, opt.savename) == (group, f"{group}_s{opt.seed}")
        # the reference-reproducing switches behind the published numbers
        if opt.batch_mining == "distance" and want.get("batch_mining"):
            assert opt.miner_distance_no_upper_cutoff, group
            assert opt.miner_distance_lower_cutoff == 0.5
        if opt.batch_mining == "rho_distance":
            assert opt.miner_rho_distance_no_upper_cutoff, group
        assert opt.loss_arcface_reference_bug == (opt.loss == "arcface"), group
        assert opt.loss_softtriplet_reference_math == (opt.loss == "softtriplet"), group
        assert opt.loss_margin_reference_pair_count == (opt.loss == "margin"), group
        assert opt.loss_quadruplet_reference_fourth == (opt.loss == "quadruplet"), group
        assert opt.loss_margin_beta == (0.6 if "b06" in group else 1.2), group
        assert opt.loss_histogram_nbins == (11 if group == "SOP_Histogram" else 65)
        assert opt.loss_softmax_lr == (0.002 if group == "SOP_Softmax" else 1e-5)


ROBUST_DATASETS = {
    "mnist": "mnist",
    "fashion": "fashion",
    "cub": "cub200",
    "cars": "cars196",
    "sop": "online_products",
}
DEFENSES = {
    "d": ("est", False),
    "p": ("act", False),
    "ghmetsm": ("hm", False),
    "ghmetsmi": ("hm", True),
}


def test_robustness_runs_train_swipe_and_score_every_row(tmp_path):
    commands = dry_run("Robustness_Runs.sh", tmp_path)
    assert len(commands) == 3 * 45
    rows = set()
    for train, swipe, ers in zip(commands[::3], commands[1::3], commands[2::3], strict=True):
        assert train[:2] == ["python", "main.py"]
        robrank = option(train, "-C")
        short, model, loss = robrank.split(":")
        small = short in ("mnist", "fashion")
        backbone = "rc2f2" if small else "rres18"
        suffix = model.removeprefix(backbone)
        opt = parse(train[2:])
        folder = tmp_path / "runs" / opt.dataset / opt.savename
        eta = None if suffix == "" else opt.defense_pgditer
        assert opt.savename == f"{short}_{model}_{loss}" + (f"_eta{eta}" if eta else "")
        rows.add((short, suffix, eta))
        assert opt.dataset == ROBUST_DATASETS[short] and loss == "ptripletN"
        assert opt.arch.startswith("c2f2" if small else "resnet18")
        assert (opt.loss, opt.batch_mining, opt.embed_dim) == ("triplet", "anchor_random", 512)
        defense, ics = DEFENSES.get(suffix, ("none", False))
        assert (opt.defense, opt.defense_ics) == (defense, ics), robrank
        if defense == "hm":
            assert (opt.defense_hm_source, opt.defense_hm_destination) == ("softhard", "semihard")
            assert opt.defense_hm_gradual != "off"
        assert opt.defense_ics_lambda == (0.05 if short == "sop" and ics else 0.5), robrank
        profile = "rob28" if small else "rob224"
        checkpoint = str(folder / "checkpoint_last.pth")
        assert (
            swipe
            == f"python eval.py --test_path {checkpoint} --swipe {profile} "
            "--attack_compat robrank".split()
        )
        assert ers == ["python", "eval.py", "--ers", f"{checkpoint}.{profile}.json"]
    assert rows == {
        (short, suffix, eta)
        for short in ROBUST_DATASETS
        for suffix, eta in [("", None)] + [(s, e) for s in DEFENSES for e in (8, 32)]
    }


# --- the runner, driven by a stub interpreter ---------------------------------------------------

STUB = """#!{python}
import json, os, pathlib, re, sys, time
args = sys.argv[1:]
script = pathlib.Path(args[0]).name
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps({{"argv": args, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}}) + "\\n")
def value(flag):
    return args[len(args) - 1 - args[::-1].index(flag) + 1]
if script == "main.py":
    if "--resume" in args:
        folder = pathlib.Path(value("--resume")).parent
    else:
        root = pathlib.Path(value("--save_path")) / value("--dataset")
        folder, counter = root / value("--savename"), 0
        while folder.exists():  # main.py's make_run_dir
            counter += 1
            folder = root / f"{{value('--savename')}}_{{counter}}"
    if re.search(os.environ.get("STUB_FAIL", "^$"), folder.name):
        sys.exit("error: --loss: the stub fails " + folder.name)
    try:  # STUB_BARRIER: wait for that many runs to have started; STUB_BLOCK: wait for Ctrl-C
        barrier = int(os.environ.get("STUB_BARRIER", "0"))
        started = pathlib.Path(os.environ["STUB_LOG"] + ".started")
        started.mkdir(exist_ok=True)
        (started / folder.name).touch()
        deadline = time.monotonic() + 60
        while len(list(started.iterdir())) < barrier and time.monotonic() < deadline:
            time.sleep(0.02)
        if os.environ.get("STUB_BLOCK"):
            time.sleep(120)
    except KeyboardInterrupt:
        print("interrupted: the stub", file=sys.stderr)
        sys.exit(130)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "checkpoint_last.pth").write_text("checkpoint")
    (folder / "training_summary.json").write_text("{{}}")
    print("trained", folder)
elif "--swipe" in args:
    pathlib.Path(value("--test_path") + "." + value("--swipe") + ".json").write_text("{{}}")
    print("ERS 12.3")
else:
    pathlib.Path(value("--ers")).read_text()
    print("term raw score")
    print("ERS 12.3")
"""


class Runner:
    """A tiny run list in ``tmp_path`` that sources run_lists/common.sh, with a stub PYTHON."""

    def __init__(self, tmp_path: pathlib.Path, jobs: str) -> None:
        self.tmp = tmp_path
        self.runs = tmp_path / "runs"
        self.calls_file = tmp_path / "calls.jsonl"
        self.stub = tmp_path / "stub.py"
        self.stub.write_text(STUB.format(python=sys.executable))
        self.stub.chmod(0o755)
        self.script = tmp_path / "list.sh"
        self.script.write_text(
            f"#!/usr/bin/env bash\n# A test list.\nsource {shlex.quote(str(COMMON))}\n{jobs}\n"
            'run_jobs "$@"\n'
        )

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHON": str(self.stub),
            "SAVEPATH": str(self.runs),
            "DATAPATH": "/data",
            "STUB_LOG": str(self.calls_file),
            "GPUS": "0",
            **extra,
        }

    def run(self, *options: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(self.script), *options],
            cwd=self.tmp,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def calls(self) -> list[dict]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]

    def folder(self, name: str, dataset: str = "digits") -> pathlib.Path:
        return self.runs / dataset / name


def test_jobs_run_on_every_gpu_with_gpu_0_inside(tmp_path):
    runner = Runner(tmp_path, "\n".join(f"train job{i} digits --seed {i}" for i in range(4)))
    result = runner.run(GPUS="0 1", STUB_BARRIER="2")  # the first two run at the same time
    assert result.returncode == 0, result.stderr
    calls = runner.calls()
    assert sorted(option(c["argv"], "--savename") for c in calls) == [f"job{i}" for i in range(4)]
    assert {c["cuda"] for c in calls} == {"0", "1"}
    for call in calls:
        argv = call["argv"]
        assert argv[0] == str(ROOT / "main.py")
        assert argv[-2:] == ["--gpu", "0"]
        assert option(argv, "--dataset") == "digits"
        assert option(argv, "--source_path") == "/data"
        assert option(argv, "--save_path") == str(runner.runs)
    for i in range(4):
        assert (runner.folder(f"job{i}") / "training_summary.json").is_file()
        assert "trained" in (runner.runs / "logs" / f"job{i}.log").read_text()
    assert "4 jobs: 4 done, 0 skipped, 0 failed" in result.stdout


def test_finished_skipped_checkpoint_resumed_empty_folder_moved_aside(tmp_path):
    runner = Runner(
        tmp_path,
        "\n".join(
            [
                "train finished digits --loss margin",
                "train killed digits --n_epochs 3 --kernels 0 --loss margin --log_online",
                "train empty digits --loss margin",
            ]
        ),
    )
    runner.folder("finished").mkdir(parents=True)
    (runner.folder("finished") / "training_summary.json").write_text("{}")
    runner.folder("killed").mkdir()
    (runner.folder("killed") / "checkpoint_last.pth").write_text("epoch 1")
    runner.folder("empty").mkdir()
    (runner.folder("empty") / "options.json").write_text("{}")

    dry = runner.run("--dry-run")
    assert dry.returncode == 0 and runner.calls() == []
    assert len(dry.stdout.splitlines()) == 2  # the finished job has nothing to run
    assert "finished" in dry.stderr and "moved aside" in dry.stderr
    assert runner.folder("empty").is_dir()  # a dry run moves nothing

    result = runner.run()
    assert result.returncode == 0, result.stderr
    checkpoint = str(runner.folder("killed") / "checkpoint_last.pth")
    resumed, fresh = runner.calls()  # one worker: in the order of the list
    assert (
        resumed["argv"][1:]
        == f"--resume {checkpoint} --n_epochs 3 --kernels 0 --log_online "
        "--source_path /data --gpu 0".split()
    )
    assert option(fresh["argv"], "--savename") == "empty"
    assert re.search(r"skip finished: finished", result.stdout)
    assert "resume killed" in result.stdout
    aside = list((runner.runs / "digits").glob("empty.incomplete-*"))
    assert len(aside) == 1 and (aside[0] / "options.json").is_file()
    assert (runner.folder("empty") / "training_summary.json").is_file()
    assert not runner.folder("empty_1").exists()
    assert "3 jobs: 2 done, 1 skipped, 0 failed" in result.stdout


def test_a_failed_job_fails_the_list_naming_it(tmp_path):
    runner = Runner(tmp_path, "train ok1 digits\ntrain bad digits\ntrain ok2 digits")
    result = runner.run(GPUS="0 1", STUB_FAIL="^bad$")
    assert result.returncode == 1
    assert "FAILED bad (exit 1): error: --loss: the stub fails bad" in result.stdout
    assert result.stdout.splitlines()[-1].endswith("3 jobs: 2 done, 0 skipped, 1 failed: bad")
    assert (runner.folder("ok1") / "training_summary.json").is_file()
    assert (runner.folder("ok2") / "training_summary.json").is_file()


def test_only_filters_by_name_and_options_are_checked(tmp_path):
    runner = Runner(tmp_path, "train alpha digits\ntrain beta digits\ntrain alphabet digits")
    assert runner.run("--only", "^alpha").returncode == 0
    assert sorted(option(c["argv"], "--savename") for c in runner.calls()) == ["alpha", "alphabet"]
    assert (
        runner.calls()[0]["argv"][1:]
        == "--dataset digits --source_path /data --save_path "
        f"{runner.runs} --savename alpha --gpu 0".split()
    )  # a job without flags adds none
    dry = runner.run("--dry-run", "--only=^beta$")
    assert [option(shlex.split(line), "--savename") for line in dry.stdout.splitlines()] == ["beta"]

    for options, message in [
        (["--frobnicate"], "unknown option '--frobnicate'"),
        (["--only"], "--only needs a REGEX"),
        (["--only", "("], "not a valid regular expression"),
        (["--only", "gamma"], "no job matches"),
    ]:
        result = runner.run(*options)
        assert result.returncode == 2, options
        assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
        assert message in result.stderr
    assert len(runner.calls()) == 2  # none of them ran anything

    usage = runner.run("--help")
    assert usage.returncode == 0 and "A test list." in usage.stdout and "--dry-run" in usage.stdout


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ("train a digits --savename b", "--savename is set by the runner"),
        ("train a digits --save_path=/x", "--save_path is set by the runner"),
        ("train a digits\ntrain a digits", "declared twice"),
        ("train a/b digits", "job name 'a/b'"),
        ("train_and_swipe a cub200 rob224 -C cars:rres18p:ptripletN", "trains on cars196"),
    ],
)
def test_bad_declarations_stop_the_list(tmp_path, declaration, message):
    result = Runner(tmp_path, declaration).run("--dry-run")
    assert result.returncode == 2 and message in result.stderr
    assert result.stdout == ""


def test_dry_run_lines_paste_into_a_shell(tmp_path):
    runner = Runner(tmp_path, "train 'job1' digits --group 'two words' --evaluation_metrics 'a$b'")
    dry = runner.run("--dry-run")
    (line,) = dry.stdout.splitlines()
    argv = shlex.split(line)
    assert argv[:2] == [str(runner.stub), str(ROOT / "main.py")]
    assert option(argv, "--group") == "two words" and option(argv, "--evaluation_metrics") == "a$b"
    assert "CUDA_VISIBLE_DEVICES" not in line
    pasted = subprocess.run(["bash", "-c", line], env=runner.env(), capture_output=True, text=True)
    assert pasted.returncode == 0 and runner.calls()[0]["argv"] == argv[1:]


def test_train_and_swipe_scores_and_skips_what_exists(tmp_path):
    runner = Runner(tmp_path, "train_and_swipe row mnist rob28 -C mnist:rc2f2p:ptripletN")
    first = runner.run()
    assert first.returncode == 0, first.stderr
    checkpoint = str(runner.folder("row", "mnist") / "checkpoint_last.pth")
    argvs = [c["argv"][1:] for c in runner.calls()]
    assert argvs[0][:2] == ["-C", "mnist:rc2f2p:ptripletN"]
    assert argvs[1:] == [
        ["--test_path", checkpoint, "--swipe", "rob28"],
        ["--ers", f"{checkpoint}.rob28.json"],
    ]
    assert re.search(r"done row \(\d+m\d+s\); ERS 12.3", first.stdout)

    second = runner.run()
    assert second.returncode == 0
    assert [c["argv"][1:] for c in runner.calls()][3:] == [["--ers", f"{checkpoint}.rob28.json"]]
    assert "skip row: finished" in second.stdout and "ERS 12.3" in second.stdout


def test_ctrl_c_stops_the_workers_and_their_runs(tmp_path):
    runner = Runner(tmp_path, "train first digits\ntrain second digits")
    process = subprocess.Popen(
        ["bash", str(runner.script)],
        cwd=tmp_path,
        env=runner.env(STUB_BLOCK="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = pathlib.Path(f"{runner.calls_file}.started") / "first"
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), "the first job never started"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted: stopping the workers" in stderr
    assert "interrupted first" in stdout
    assert "interrupted: the stub" in (runner.runs / "logs" / "first.log").read_text()
    assert [option(c["argv"], "--savename") for c in runner.calls()] == ["first"]


@pytest.mark.slow
def test_two_digits_runs_train_then_skip(tmp_path):
    """The real main.py: two one-epoch jobs on digits finish (in parallel, one thread each);
    run again, both are skipped."""
    script = tmp_path / "digits.sh"
    flags = (
        "--n_epochs 1 --num_workers 0 --bs 64 --evaluation_metrics e_recall@1 --no_train_metrics"
    )
    script.write_text(
        f"source {shlex.quote(str(COMMON))}\n"
        f"train first digits {flags} --seed 0\ntrain second digits {flags} --seed 1\n"
        'run_jobs "$@"\n'
    )
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "SAVEPATH": str(tmp_path / "runs"),
        "GPUS": "0 1",
        "OMP_NUM_THREADS": "1",
    }
    first = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stdout + first.stderr
    for name in ("first", "second"):
        assert (tmp_path / "runs" / "digits" / name / "training_summary.json").is_file()
        assert "Run folder:" in (tmp_path / "runs" / "logs" / f"{name}.log").read_text()
    again = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0
    assert "skip first: finished" in again.stdout and "skip second: finished" in again.stdout
    assert "2 jobs: 0 done, 2 skipped, 0 failed" in again.stdout


# Methods_Runs.sh: methods.md §A.4 (IDML-PA), §A.8 (PA, ResNet-50 rows), §B.3 (DADA).
METHOD_RECIPES = {  # name -> (dataset, lr, StepLR period, gamma)
    "PA_CUB": ("cub200", 1e-4, 5, 0.5),
    "PA_CARS": ("cars196", 1e-4, 10, 0.5),
    "IDML_PA_CUB": ("cub200", 6e-4, 5, 0.5),
    "IDML_PA_CARS": ("cars196", 2.5e-4, 10, 0.5),
    "IDML_PA_SOP": ("online_products", 6e-4, 10, 0.25),
}
PA_RECIPE = {
    "arch": "resnet50_frozen_double_normalize", "embed_dim": 512, "loss": "proxy_anchor",
    "loss_proxy_anchor_alpha": 32.0, "loss_proxy_anchor_delta": 0.1,
    "loss_proxy_anchor_lrmulti": 100.0, "data_sampler": "shuffle", "bs": 120, "optim": "adamw",
    "decay": 1e-4, "n_epochs": 60, "scheduler": "steplr", "warmup_epochs": 5,
    "freeze_bn_affine": True, "warmup_unfreezes_bn_affine": True, "grad_clip_value": 10.0,
    "model_selection": "test", "seed": 1,
}  # fmt: skip


def test_methods_runs_parse_to_the_papers_recipes(tmp_path):
    commands = dry_run("Methods_Runs.sh", tmp_path)
    names = [option(c, "--savename") for c in commands]
    assert names == [*METHOD_RECIPES, *(f"DADA_{d}" for d in
                     ("cub200", "cars196", "online_products", "inshop"))]  # fmt: skip
    for command, name in zip(commands, names, strict=True):
        opt = parse(command[2:])
        if name.startswith("DADA_"):
            assert opt.loss == "dadaproxy" and opt.dataset == name[5:]
            assert opt.model_selection == "test" and opt.scheduler_after_warmup
            assert opt.n_epochs == {"cub200": 60, "cars196": 60}.get(opt.dataset, 200)
            continue
        dataset, lr, period, gamma = METHOD_RECIPES[name]
        assert options(opt, PA_RECIPE) == PA_RECIPE, name
        assert (opt.dataset, opt.lr, opt.lr_decay_step, opt.gamma) == (dataset, lr, period, gamma)
        idml = name.startswith("IDML_")
        assert (opt.idml, opt.loss_idml_normalize_uncertainty, opt.input_mixup) == (idml,) * 3
        sop = dataset == "online_products"
        assert ("e_recall@100" in opt.evaluation_metrics) == sop
        assert ("e_recall@8" in opt.evaluation_metrics) == (not sop)
