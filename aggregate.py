"""Aggregate many runs into mean ± std tables (Markdown, CSV, LaTeX) and figures.

    python aggregate.py FOLDER... --output DIR [--wandb ENTITY/PROJECT] [--wandb_offline FOLDER]

Reads every run folder below each FOLDER (``options.json``, ``CSV_Logs/``,
``training_summary.json``, ``checkpoint_last.pth.<profile>[.firstN].json`` swipes) and, with
``--wandb``, the runs of a W&B project through the public API (``scan_history``: every logged
row), or with ``--wandb_offline`` the offline run files below a folder. Groups the finished runs
by ``--group`` (or by their options minus the seed), per dataset, and reports mean ± population
std over the seeds under two protocols (``utilities/aggregation.py``): ``clean`` (the epoch
selected on validation, else the last) and ``revisit`` (each metric's best test epoch, the
Revisiting-DML paper's protocol, marked as such), plus the ERS terms of the swipes.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import pathlib
import sys
from collections.abc import Sequence

from parameters import DefaultsHelpFormatter, OneLineErrorParser
from utilities import aggregation, result_figures, result_tables
from utilities.errors import ConfigError, one_line
from utilities.files import atomic_write_text
from utilities.outputs import check_folder_writable, save_result
from utilities.run_records import RunRecord, read_local_run, run_folders, wandb_record
from utilities.wandb_runs import (
    WandbUnavailableError,
    api_runs,
    offline_run_files,
    read_offline_run,
)

SEEDS_COLUMN = result_tables.Column("seeds", 1.0, 0, None, spread=False)
SHARED_METRICS = ("e_recall@1", "nmi")
FIGURE_METRICS = ("e_recall@1", "e_recall@2", "e_recall@4", "nmi", "f1", "mAP_c", "mAP_R")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="aggregate.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("folders", nargs="*", metavar="FOLDER", help="folders of run folders")
    parser.add_argument("--output", required=True, help="folder for the tables and figures")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="also read this W&B project")
    parser.add_argument(
        "--wandb_offline",
        nargs="+",
        default=[],
        metavar="FOLDER",
        help="also read the W&B offline run files below these folders",
    )
    parser.add_argument(
        "--include_unfinished",
        action="store_true",
        help="also aggregate runs that did not finish (a run folder without "
        "training_summary.json; a W&B run that crashed or logged fewer epochs than --n_epochs)",
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=None,
        help="test metrics to tabulate (default: every one the runs logged)",
    )
    return parser


def read_records(args: argparse.Namespace) -> tuple[list[RunRecord], list[str]]:
    """Every run of every source, and the notes (unreadable W&B, runs left out)."""
    records: list[RunRecord] = []
    notes: list[str] = []
    for folder in args.folders:
        found = run_folders(folder)
        if not found:
            raise ConfigError(
                f"FOLDER: no run folder under {folder}; expected folders holding options.json "
                "and CSV_Logs/ as main.py writes them"
            )
        records += [read_local_run(run) for run in found]
    for folder in args.wandb_offline:
        if not pathlib.Path(folder).is_dir():
            raise ConfigError(f"--wandb_offline: {folder} is not a folder")
        files = offline_run_files(folder)
        if not files:
            raise ConfigError(f"--wandb_offline: no run-*.wandb file under {folder}")
        records += [wandb_record(read_offline_run(path)) for path in files]
    if args.wandb:
        if args.wandb.count("/") != 1 or not all(args.wandb.split("/")):
            raise ConfigError(f"--wandb: {args.wandb!r} is not ENTITY/PROJECT")
        try:
            records += [wandb_record(run) for run in api_runs(args.wandb)]
        except WandbUnavailableError as reason:
            if not records:
                raise ConfigError(f"--wandb: {reason}; and no local run was given") from None
            notes.append(f"--wandb: {reason}; the tables hold the local runs only")
    if not args.include_unfinished:
        unfinished = [r for r in records if not r.finished]
        notes += [f"{r.source}: not finished; left out (--include_unfinished keeps it)"
                  for r in unfinished]  # fmt: skip
        records = [r for r in records if r.finished]
    if not records:
        raise ConfigError("no finished run to aggregate (--include_unfinished takes the others)")
    return records, notes


def build_tables(groups: list[aggregation.Group], metrics: Sequence[str] | None):
    """Per protocol and dataset a metric table; per dataset and profile an ERS table."""
    logged = aggregation.test_metric_columns(groups)
    for name in metrics or []:
        if name not in logged:
            close = difflib.get_close_matches(name, logged, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"--metrics: no run logged the test metric {name!r}; {hint}"
                              f"logged: {' '.join(logged)}")  # fmt: skip
    names = list(metrics) if metrics else logged
    columns = [result_tables.metric_column(n) for n in names]
    columns.append(result_tables.Column("epoch", 1.0, 1, None))
    columns.append(SEEDS_COLUMN)
    tables, stats = [], {}
    datasets = list(dict.fromkeys(g.dataset for g in groups))
    for protocol in aggregation.PROTOCOLS:
        stats[protocol] = {}
        for dataset in datasets:
            rows = {}
            for group in (g for g in groups if g.dataset == dataset):
                values = aggregation.group_table(group, protocol)
                values["seeds"] = aggregation.Stat(float(len(group.runs)), 0.0, len(group.runs))
                rows[group.label] = values
            stats[protocol][dataset] = rows
            tables.append((protocol, dataset, result_tables.Table(
                f"{dataset}: test metrics, protocol {protocol}",
                f"Protocol `{protocol}`: {aggregation.PROTOCOL_NOTES[protocol]}. Mean ± "
                "population std over the seeds; best per column in bold; `epoch`: the "
                + ("best test epoch of the first --storage_metrics key." if protocol == "revisit"
                   else "selected epoch."), columns, rows)))  # fmt: skip
    if len(datasets) > 1:
        tables += [(f"shared_{p}", "all", shared_table(stats[p], p)) for p in aggregation.PROTOCOLS]
    ers = {(g.dataset, g.label): aggregation.ers_table(g) for g in groups}  # once per group
    for dataset in datasets:
        profiles = dict.fromkeys(p for g in groups if g.dataset == dataset
                                 for r in g.runs for p in r.swipes)  # fmt: skip
        for profile in profiles:
            rows = {}
            for group in (g for g in groups if g.dataset == dataset):
                table = ers[(group.dataset, group.label)]
                if profile in table:
                    partial = (
                        " (partial swipe)" if aggregation.partial_swipe(group, profile) else ""
                    )
                    seeds = table[profile]["ERS"].n
                    rows[group.label + partial] = {
                        **table[profile],
                        "seeds": aggregation.Stat(float(seeds), 0.0, seeds),
                    }
            tables.append(("ers", dataset, result_tables.Table(
                f"{dataset}: ERS terms of the {profile} swipes",
                "Raw ERS terms (robustness.md §3.2) and ERS, mean ± population std over the "
                "seeds' checkpoint_last swipes; the most robust value per column in bold.",
                [*result_tables.ers_columns(), SEEDS_COLUMN],
                rows)))  # fmt: skip
    return tables, stats


def shared_table(results: dict, protocol: str) -> result_tables.Table:
    """The paper's comparison table (``Result_Evaluations.py``'s ``shared_table``): one row per
    method across the datasets (dataset prefix stripped, ``reg`` variants as ``R-``), each
    dataset's R@1 and NMI; baselines first, then the ρ-regularised methods."""
    rows: dict[str, dict[str, aggregation.Stat]] = {}
    columns = []
    for dataset, groups in results.items():
        for metric in SHARED_METRICS:
            if any(metric in values for values in groups.values()):
                column = result_tables.metric_column(metric)
                columns.append(dataclasses.replace(column, key=f"{dataset} {metric}"))
        for label, values in groups.items():
            row = rows.setdefault(aggregation.method_name(label), {})
            row.update({f"{dataset} {m}": values[m] for m in SHARED_METRICS if m in values})
    ordered = dict(sorted(rows.items(), key=lambda item: (item[0].startswith("R-"), item[0])))
    return result_tables.Table(
        f"all datasets: R@1 and NMI per method, protocol {protocol}",
        f"Protocol `{protocol}`: {aggregation.PROTOCOL_NOTES[protocol]}. Rows join groups whose "
        "names differ only in their dataset prefix (CUB_, CARS_/CAR_, SOP_; CUBreg_ ... as R-).",
        columns,
        ordered,
    )


def results_markdown(records: list[RunRecord], groups, tables) -> str:
    """``results.md``, also printed: every table."""
    lines = ["# Aggregated results", "", f"{len(records)} runs in {len(groups)} groups.", ""]
    return "\n".join([*lines, *(result_tables.markdown(table) + "\n" for _, _, table in tables)])


def write_outputs(output: pathlib.Path, markdown: str, records, groups, tables, stats) -> list:
    written = []

    def put(name: str, text: str) -> None:
        atomic_write_text(output / name, text)
        written.append(output / name)

    put("results.md", markdown)
    put("tables.tex", "% booktabs tables written by aggregate.py\n"
        + "\n\n".join(result_tables.latex(table) for _, _, table in tables) + "\n")  # fmt: skip
    files = {"clean": "test_clean", "revisit": "test_revisit", "ers": "ers",
             "shared_clean": "shared_clean", "shared_revisit": "shared_revisit"}  # fmt: skip
    for kind, stem in files.items():
        rows = [row for k, dataset, table in tables if k == kind
                for row in result_tables.csv_rows(table, [("dataset", dataset)])]  # fmt: skip
        if rows:
            put(f"{stem}.csv", result_tables.csv_text(rows))
    per_run = []
    for group in groups:
        for run in group.runs:
            row = {"group": group.label, "source": run.source, **aggregation.describe(run)}
            for protocol in aggregation.PROTOCOLS:
                values = aggregation.run_values(run, protocol)
                row.update({f"{protocol}:{k}": v if math.isfinite(v) else ""
                            for k, v in values.items()})  # fmt: skip
            per_run.append(row)
    put("runs.csv", result_tables.csv_text(per_run))
    for protocol in aggregation.PROTOCOLS:
        results = stats[protocol]
        columns = [c for c in FIGURE_METRICS
                   if any(c in s for rows in results.values() for s in rows.values())]  # fmt: skip
        names = columns or aggregation.test_metric_columns(groups)
        recall = "e_recall@1" if "e_recall@1" in names else names[0]
        written += result_figures.correlation_matrix(
            results, names, output / f"metric_correlation_matrix_{protocol}"
        )
        written += result_figures.recall_against_rho(
            results, recall, output / f"recall_vs_rho_{protocol}"
        )
        for name in aggregation.test_metric_columns(groups):
            written += result_figures.metric_bars(
                results, name, output / f"bars_{protocol}_{name.replace('@', '_at_')}",
                aggregation.higher_is_better(name),
            )  # fmt: skip
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        output = pathlib.Path(args.output)
        check_folder_writable(output, "--output")
        if not args.folders and not args.wandb and not args.wandb_offline:
            raise ConfigError("FOLDER: give run folders, --wandb ENTITY/PROJECT or --wandb_offline")
        records, notes = read_records(args)
        groups, left_out = aggregation.group_runs(records)
        tables, stats = build_tables(groups, args.metrics)
    except ConfigError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    for note in [*notes, *left_out]:
        print(f"note: {note}", file=sys.stderr)
    markdown = results_markdown(records, groups, tables)
    print(markdown)  # printed first: a failed write below loses nothing
    try:
        output.mkdir(parents=True, exist_ok=True)
        written = write_outputs(output, markdown, records, groups, tables, stats)
    except OSError as error:
        reason = f"{type(error).__name__}: {error.strerror or error}"
        try:  # the tables at least, where asked or in a fallback file the message names
            save_result(output / "results.md", lambda t: atomic_write_text(t, markdown), "--output")
            print(f"error: --output: could not write to {output} ({reason}); the tables are "
                  f"in {output / 'results.md'} and printed above", file=sys.stderr)  # fmt: skip
        except ConfigError as saved:
            print(f"error: {one_line(saved)} (the tables are printed above)", file=sys.stderr)
        return 2
    print(f"Wrote {len(written)} files to {output} (results.md, tables.tex, CSV, figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
