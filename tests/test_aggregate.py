"""``aggregate.py`` on real short runs on digits: three groups × two seeds (one group with a
validation split, two runs with an ERS swipe, every run also logged to W&B offline); the tables'
means and stds against values computed here from the run folders' CSV files, the LaTeX
structure, the figures, the W&B paths (offline files, a stand-in API, no key)."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil

import pytest

import aggregate
import eval as eval_cli
import main
from attacks.profiles import PROFILES
from metrics.ers import ERS_TERMS, ers_score, ers_terms
from utilities import aggregation, result_tables, wandb_runs
from utilities.run_records import RunRecord, read_local_run
from utilities.wandb_runs import WandbRun, read_offline_run

METRICS = ["e_recall@1", "e_recall@2", "mAP_R", "dists@intra", "rho_spectrum@2"]
GROUPS = {  # group -> its flags; DIG_val has a validation split, so `clean` selects on it
    "DIG_margin": ["--loss", "margin", "--batch_mining", "distance"],
    "DIG_triplet": ["--loss", "triplet", "--batch_mining", "semihard"],
    "DIG_val": ["--loss", "margin", "--batch_mining", "distance", "--use_tv_split"],
}
SEEDS = (0, 1)
ONLINE_GROUP, ONLINE_SEED = "DIG_margin", 0  # this run also logs to W&B (offline files)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The runs' root (local folders with offline W&B logs inside) and the swiped runs."""
    root = tmp_path_factory.mktemp("aggregate")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(root / "no-netrc"))
    monkeypatch.setenv("HOME", str(root))  # no ~/.netrc: offline W&B, and no key for --wandb
    for group, flags in GROUPS.items():
        for seed in SEEDS:
            online = ["--log_online"] if (group, seed) == (ONLINE_GROUP, ONLINE_SEED) else []
            main.train([*flags, "--n_epochs", "2", "--seed", str(seed), "--group", group,
                        "--savename", f"{group}_s{seed}", "--save_path", str(root),
                        "--num_workers", "0", "--bs", "96", "--project", "agg",
                        "--evaluation_metrics", *METRICS, *online])  # fmt: skip
    swiped = [root / "digits" / f"DIG_triplet_s{seed}" for seed in SEEDS]
    # rob28 cut to 2 PGD steps: the test checks the aggregation; the attacks are tested elsewhere
    monkeypatch.setitem(PROFILES, "rob28", [s.replace("=32", "=2") for s in PROFILES["rob28"]])
    for folder in swiped:
        assert (
            eval_cli.main(
                [
                    "--test_path",
                    str(folder / "checkpoint_last.pth"),
                    "--swipe",
                    "rob28",
                    "--attack_batches",
                    "1",
                    "--attack_bs",
                    "8",
                ]
            )
            == 0
        )
    yield root, swiped, monkeypatch
    monkeypatch.undo()


def csv_log(folder, split):
    with open(folder / "CSV_Logs" / f"{split}.csv") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def by_hand(root, group, protocol, seeds=SEEDS):
    """Per metric (mean, population std) over the seeds, computed from the CSV logs."""
    per_seed = []
    for seed in seeds:
        folder = root / "digits" / f"{group}_s{seed}"
        test = csv_log(folder, "Test")
        if protocol == "revisit":  # each metric's own best test epoch; dists/rho: lowest
            pick = {m: (min if m in ("dists@intra", "rho_spectrum@2") else max) for m in METRICS}
            per_seed.append({m: pick[m](row[m] for row in test) for m in METRICS})
        else:
            val = csv_log(folder, "Val") if (folder / "CSV_Logs" / "Val.csv").exists() else None
            if val:  # the first best validation R@1
                best = max(row["e_recall@1"] for row in val)
                epoch = next(row["epoch"] for row in val if row["e_recall@1"] == best)
            else:
                epoch = test[-1]["epoch"]
            per_seed.append(next(row for row in test if row["epoch"] == epoch))
    result = {}
    for metric in METRICS:
        values = [seed[metric] for seed in per_seed]
        mean = sum(values) / len(values)
        result[metric] = (mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)))
    return result


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def aggregated(runs, tmp_path_factory):
    root, _, _ = runs
    output = tmp_path_factory.mktemp("tables")
    assert aggregate.main([str(root), "--output", str(output)]) == 0
    return output


@pytest.mark.parametrize("protocol", ["clean", "revisit"])
def test_means_and_stds_equal_those_computed_from_the_run_folders(runs, aggregated, protocol):
    root, _, _ = runs
    rows = {row["group"]: row for row in read_csv(aggregated / f"test_{protocol}.csv")}
    assert set(rows) == set(GROUPS)
    for group in GROUPS:
        expected = by_hand(root, group, protocol)
        assert rows[group]["seeds"] == "2.0"
        for metric, (mean, std) in expected.items():
            assert float(rows[group][f"{metric}_mean"]) == pytest.approx(mean, abs=1e-12), metric
            assert float(rows[group][f"{metric}_std"]) == pytest.approx(std, abs=1e-12), metric


def test_the_clean_protocol_selects_on_validation_and_the_revisit_one_is_marked(runs, aggregated):
    root, _, _ = runs
    per_run = read_csv(aggregated / "runs.csv")
    for row in per_run:
        folder = root / "digits" / f"{row['group']}_s{row['seed']}"
        if row["group"] == "DIG_val":
            val = csv_log(folder, "Val")
            best = max(r["e_recall@1"] for r in val)
            assert float(row["clean:epoch"]) == next(
                r["epoch"] for r in val if r["e_recall@1"] == best
            )
        else:
            assert float(row["clean:epoch"]) == 2.0
        train = csv_log(folder, "Train")  # Train-split values at the selected epoch
        at = next(r for r in train if r["epoch"] == float(row["clean:epoch"]))
        assert float(row["clean:Train rho_spectrum@2"]) == pytest.approx(at["rho_spectrum@2"])
    text = (aggregated / "results.md").read_text()
    assert "best TEST epoch per seed" in text and "test-set model selection" in text


def test_ers_table_equals_the_swipes_by_hand(runs, aggregated):
    _, swiped, _ = runs
    rows = read_csv(aggregated / "ers.csv")
    assert [row["group"] for row in rows] == ["DIG_triplet (partial swipe)"]
    swipes = [json.loads((f / "checkpoint_last.pth.rob28.first1.json").read_text()) for f in swiped]
    terms = [ers_terms(s) for s in swipes]
    for name in [*ERS_TERMS, "ERS"]:
        values = [ers_score(t) if name == "ERS" else t[name][0] for t in terms]
        mean = sum(values) / 2
        assert float(rows[0][f"{name}_mean"]) == pytest.approx(mean, abs=1e-9), name
        assert float(rows[0][f"{name}_std"]) == pytest.approx(abs(values[0] - mean), abs=1e-9)


def test_best_per_column_is_bold_in_its_direction(aggregated):
    rows = {row["group"]: row for row in read_csv(aggregated / "test_clean.csv")}
    lines = (aggregated / "results.md").read_text().split("protocol clean", 1)[1].splitlines()
    table = [line for line in lines if line.startswith("| DIG_")][: len(GROUPS)]
    header = next(line for line in lines if line.startswith("| group"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    for metric, pick in (("e_recall@1", max), ("dists@intra", min)):
        best = pick(rows, key=lambda g, m=metric: float(rows[g][f"{m}_mean"]))
        index = next(i for i, c in enumerate(columns) if c.startswith(metric))
        for line in table:
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[index].startswith("**") == (cells[0] == best), (metric, line)


def test_latex_is_well_formed(aggregated):
    text = (aggregated / "tables.tex").read_text()
    assert (
        text.count(r"\begin{tabular}") == text.count(r"\end{tabular}") == 3
    )  # clean, revisit, ERS
    assert text.count(r"\begin{table}") == text.count(r"\end{table}") == 3
    for block in re.findall(r"\\begin\{tabular\}\{(l r*)\}(.*?)\\end\{tabular\}", text, re.S):
        spec, body = block
        rows = [line for line in body.strip().splitlines() if line.endswith(r"\\")]
        assert rows, body
        for row in rows:  # every row has the spec's cells; math and braces balance
            assert row.count("&") - row.count(r"\&") == len(spec) - 1, row
            assert row.count("{") == row.count("}") and row.count("$") % 2 == 0, row
        assert body.strip().startswith(r"\toprule") and body.strip().endswith(r"\bottomrule")
    assert r"DIG\_margin" in text and "DIG_margin" not in text.replace(r"DIG\_margin", "")
    assert r"$\mathbf{" in text and r"\pm" in text


def test_every_figure_is_written(aggregated):
    for protocol in ("clean", "revisit"):
        stems = [f"metric_correlation_matrix_{protocol}", f"recall_vs_rho_{protocol}",
                 *(f"bars_{protocol}_{m.replace('@', '_at_')}" for m in METRICS)]  # fmt: skip
        for stem in stems:
            for suffix, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
                path = aggregated / f"{stem}.{suffix}"
                assert path.read_bytes().startswith(magic), path


def test_offline_wandb_runs_give_the_same_tables(runs, tmp_path):
    root, _, _ = runs
    files = wandb_runs.offline_run_files(root)
    assert len(files) == 1
    run = read_offline_run(files[0])
    assert run.finished and run.config["project"] == "agg" and "_wandb" not in run.config
    wandb_only = tmp_path / "wandb_only"
    assert aggregate.main(["--wandb_offline", str(root), "--output", str(wandb_only)]) == 0
    for protocol in ("clean", "revisit"):
        rows = {row["group"]: row for row in read_csv(wandb_only / f"test_{protocol}.csv")}
        assert set(rows) == {ONLINE_GROUP} and rows[ONLINE_GROUP]["seeds"] == "1.0"
        for metric, (mean, _) in by_hand(root, ONLINE_GROUP, protocol, (ONLINE_SEED,)).items():
            assert float(rows[ONLINE_GROUP][f"{metric}_mean"]) == pytest.approx(mean, abs=1e-9)


def test_the_api_path_reads_every_row_with_scan_history(runs, tmp_path, monkeypatch, capsys):
    """A stand-in for ``wandb.Api`` serving the offline runs' rows: the aggregator must read
    them with ``scan_history`` (every row), never the sampled ``history``."""
    root, _, _ = runs
    offline = [read_offline_run(path) for path in wandb_runs.offline_run_files(root)]

    class FakeRun:
        def __init__(self, run: WandbRun) -> None:
            self.name, self.id, self.config, self.state = (
                run.name,
                run.run_id,
                run.config,
                "finished",
            )
            self._rows = list(run.rows)

        def scan_history(self):
            return iter(self._rows)

        def history(self, *args, **kwargs):
            raise AssertionError("the sampled history drops rows")

    class FakeApi:
        def __init__(self, timeout=None):
            pass

        def runs(self, path):
            assert path == "team/agg"
            return [FakeRun(run) for run in offline]

    import wandb

    monkeypatch.setattr(wandb, "Api", FakeApi)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    output = tmp_path / "api"
    assert aggregate.main(["--wandb", "team/agg", "--output", str(output)]) == 0
    rows = {row["group"]: row for row in read_csv(output / "test_revisit.csv")}
    expected = by_hand(root, ONLINE_GROUP, "revisit", (ONLINE_SEED,))
    assert float(rows[ONLINE_GROUP]["mAP_R_mean"]) == pytest.approx(expected["mAP_R"][0], abs=1e-9)


def test_without_a_key_the_wandb_path_says_why_and_the_local_path_works(runs, tmp_path, capsys):
    root, _, _ = runs
    assert wandb_runs.api_key_configured() is False
    output = tmp_path / "out"
    assert aggregate.main([str(root), "--wandb", "team/agg", "--output", str(output)]) == 0
    assert "--wandb: no W&B API key" in capsys.readouterr().err
    assert (output / "results.md").is_file()
    assert aggregate.main(["--wandb", "team/agg", "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --wandb: no W&B API key") and len(err.splitlines()) == 1


def test_unfinished_runs_are_left_out_unless_asked(runs, tmp_path, capsys):
    root, _, _ = runs
    copy = tmp_path / "copy" / "digits"
    shutil.copytree(root / "digits" / "DIG_margin_s0", copy / "DIG_margin_s0")
    shutil.copytree(root / "digits" / "DIG_margin_s1", copy / "DIG_margin_s1")
    (copy / "DIG_margin_s1" / "training_summary.json").unlink()  # killed before the end
    assert not read_local_run(copy / "DIG_margin_s1").finished
    output = tmp_path / "out"
    assert aggregate.main([str(tmp_path / "copy"), "--output", str(output)]) == 0
    assert "DIG_margin_s1: not finished; left out" in capsys.readouterr().err
    assert read_csv(output / "test_clean.csv")[0]["seeds"] == "1.0"
    assert aggregate.main([str(tmp_path / "copy"), "--output", str(output),
                           "--include_unfinished"]) == 0  # fmt: skip
    assert read_csv(output / "test_clean.csv")[0]["seeds"] == "2.0"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{missing}"], "FOLDER: {missing} is not a folder"),
        (["{empty}"], "FOLDER: no run folder under {empty}"),
        (["{root}", "--metrics", "e_recal@1"], "did you mean e_recall@1?"),
        (["{root}", "--wandb", "nopath"], "--wandb: 'nopath' is not ENTITY/PROJECT"),
        (["--wandb_offline", "{empty}"], "--wandb_offline: no run-*.wandb file under {empty}"),
        (["{bad_csv}"], "line 2, column e_recall@1: 'x' is not a number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, capsys, argv, message):
    root, _, _ = runs
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad" / "digits" / "run"
    shutil.copytree(root / "digits" / "DIG_margin_s0", bad)
    (bad / "CSV_Logs" / "Test.csv").write_text("epoch,e_recall@1\n1,x\n")
    names = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "root": root,
             "bad_csv": tmp_path / "bad"}  # fmt: skip
    argv = [a.format(**names) for a in argv]
    assert aggregate.main([*argv, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message.format(**names) in err, err


def test_a_run_read_from_two_sources_counts_once(runs, tmp_path, capsys):
    root, _, _ = runs
    output = tmp_path / "both"
    assert aggregate.main([str(root), "--wandb_offline", str(root), "--output", str(output)]) == 0
    assert all(row["seeds"] == "2.0" for row in read_csv(output / "test_clean.csv"))
    notes = [line for line in capsys.readouterr().err.splitlines() if "already read" in line]
    assert len(notes) == 1 and f"seed {ONLINE_SEED} of {ONLINE_GROUP} already read" in notes[0]


def synthetic_run(group, dataset, seed, recall, nmi):
    """A finished run whose test log has two epochs, the second one the given values."""
    test = {"epoch": [1.0, 2.0], "e_recall@1": [0.1, recall], "nmi": [0.1, nmi]}
    options = {"group": group, "dataset": dataset, "seed": seed, "storage_metrics": ["e_recall@1"]}
    return RunRecord(f"{group}/{seed}", f"{group}_s{seed}", options, {"Test": test}, True)


def test_the_shared_table_joins_methods_across_datasets():
    records = [synthetic_run("CUB_Margin", "cub200", 0, 0.6, 0.7),
               synthetic_run("CUB_Margin", "cub200", 1, 0.62, 0.68),
               synthetic_run("CARS_Margin", "cars196", 0, 0.8, 0.66),
               synthetic_run("CARreg_Margin", "cars196", 0, 0.82, 0.67),
               synthetic_run("SOP_Margin", "online_products", 0, 0.78, 0.9)]  # fmt: skip
    groups, _ = aggregation.group_runs(records)
    tables, _ = aggregate.build_tables(groups, None)
    shared = next(table for kind, _, table in tables if kind == "shared_clean")
    assert list(shared.rows) == ["Margin", "R-Margin"]  # baselines first
    margin = shared.rows["Margin"]
    assert margin["cub200 e_recall@1"].mean == pytest.approx(0.61)
    assert margin["cub200 e_recall@1"].std == pytest.approx(0.01)
    assert margin["cars196 nmi"].mean == pytest.approx(0.66)
    assert margin["online_products e_recall@1"].mean == pytest.approx(0.78)
    assert set(shared.rows["R-Margin"]) == {"cars196 e_recall@1", "cars196 nmi"}
    assert "cars196 e_recall@1 (×100)" in result_tables.markdown(shared)
    assert aggregation.method_name("DIG_margin") == "DIG_margin"  # not a known dataset prefix


def test_a_failed_write_keeps_the_tables_and_says_where(runs, tmp_path, capsys, monkeypatch):
    root, _, _ = runs

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(aggregate.result_figures, "metric_bars", full_disk)
    output = tmp_path / "out"
    assert aggregate.main([str(root), "--output", str(output)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0], err
    assert f"the tables are in {output / 'results.md'}" in err[0]
    assert (output / "results.md").read_text().strip() in captured.out
