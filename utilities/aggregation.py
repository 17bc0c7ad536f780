"""Groups of runs → mean ± std over seeds, under two selection protocols (``aggregate.py``).

- ``revisit`` (the Revisiting-DML paper's ``Result_Evaluations.py``, revisiting_dml.md §11):
  for each seed, every test metric at its own best test epoch (test-set model selection).
- ``clean``: every test metric at one epoch per seed: the epoch selected on the validation split
  by the first ``--storage_metrics`` key when the run has one, else the last epoch.

Per group and metric: the mean and the population standard deviation (ddof 0, as the paper's
script) over the seeds. Train-split values (ρ-spectrum, distances) are read at the epoch of the
first storage metric: its best test epoch (``revisit``) or the selected epoch (``clean``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from collections.abc import Sequence
from typing import Any

import metrics
from metrics.ers import ERS_TERMS, ers_score, ers_terms
from utilities.errors import ConfigError
from utilities.logger import best_epoch
from utilities.run_records import RunRecord

PROTOCOLS = ("clean", "revisit")
PROTOCOL_NOTES = {
    "clean": "each metric at one epoch per seed: selected on the validation split (first "
    "--storage_metrics key) when the run has one, else the last epoch",
    "revisit": "each metric at its own best TEST epoch per seed (the Revisiting-DML paper's "
    "protocol: test-set model selection, for comparison with published numbers only)",
}
DEFAULT_GROUP = "Sample_Group"  # main.py's --group default: such runs group by their options
RUN_SPECIFIC = {  # options that differ between the seeds of one experiment
    "seed", "savename", "save_path", "source_path", "resume", "gpu", "device", "num_workers",
    "log_online", "wandb_key", "project", "n_classes", "evaluate_on_gpu",
}  # fmt: skip
NOT_METRICS = {"epoch", "time"}
_DATASET_PREFIX = re.compile(r"^(?:CUB|CARS?|SOP|MNIST|FASHION|INSHOP)(reg)?_(.+)$")
_SEED_SUFFIX = re.compile(r"_s\d+$")


@dataclasses.dataclass
class Group:
    """Runs of one experiment (one per seed) on one dataset."""

    label: str
    dataset: str
    runs: list[RunRecord]


@dataclasses.dataclass
class Stat:
    mean: float
    std: float
    n: int


def group_runs(records: Sequence[RunRecord]) -> tuple[list[Group], list[str]]:
    """Groups by ``--group`` (or, for runs left at the default group, by their options minus
    the seed and the run-specific ones), per dataset; a second run of the same seed in a group
    is left out. Returns the groups and one note per run left out."""
    groups: dict[tuple[str, str], Group] = {}
    notes = []
    for record in records:
        group = record.options.get("group")
        if group and group != DEFAULT_GROUP:
            key, label = f"group={group}", str(group)
        else:
            shared = {k: v for k, v in record.options.items() if k not in RUN_SPECIFIC}
            key = json.dumps(shared, sort_keys=True, default=str)
            label = _SEED_SUFFIX.sub("", record.name)
        entry = groups.setdefault((record.dataset, key), Group(label, record.dataset, []))
        if any(run.seed == record.seed for run in entry.runs):
            notes.append(f"{record.source}: seed {record.seed} of {entry.label} already read "
                         f"from {next(r.source for r in entry.runs if r.seed == record.seed)}; "
                         "left out")  # fmt: skip
            continue
        entry.runs.append(record)
    result = sorted(groups.values(), key=lambda g: (g.dataset, g.label))
    labels: dict[tuple[str, str], int] = {}
    for group in result:  # two option sets that share a folder name stay apart
        count = labels[(group.dataset, group.label)] = (
            labels.get((group.dataset, group.label), 0) + 1
        )
        if count > 1:
            group.label = f"{group.label} #{count}"
    return result, notes


@functools.cache
def higher_is_better(name: str) -> bool:
    """The metric's direction from its registry entry; of the other columns (a step's terms,
    ``time``) the losses and ``time`` are better lower, the rest higher."""
    try:
        return metrics.build_metrics([name])[0].higher_is_better
    except (ConfigError, KeyError, ValueError, IndexError):
        return not (name.startswith("loss") or name in NOT_METRICS)


def primary_metric(record: RunRecord) -> str | None:
    """The first ``--storage_metrics`` key the test log holds (else its first metric)."""
    test = record.history.get("Test", {})
    for name in record.options.get("storage_metrics") or []:
        if name in test:
            return name
    return next((n for n in test if n not in NOT_METRICS), None)


def run_values(record: RunRecord, protocol: str) -> dict[str, float]:
    """The run's test metrics under ``protocol``, its ``epoch`` (the selected epoch, or the best
    test epoch of the primary metric) and ``Train <metric>`` columns at that epoch."""
    test = record.history.get("Test", {})
    primary = primary_metric(record)
    if not test.get("epoch") or primary is None:
        return {}
    values: dict[str, float] = {}
    if protocol == "revisit":
        for name, column in test.items():
            if name not in NOT_METRICS:
                index = best_epoch(test, name, higher_is_better(name))
                values[name] = column[index] if index is not None else math.nan
        index = best_epoch(test, primary, higher_is_better(primary))
        epoch = test["epoch"][index] if index is not None else math.nan
    else:
        val = record.history.get("Val", {})
        index = best_epoch(val, primary, higher_is_better(primary))
        epoch = val["epoch"][index] if index is not None else test["epoch"][-1]
        row = test["epoch"].index(epoch) if epoch in test["epoch"] else len(test["epoch"]) - 1
        values.update({n: c[row] for n, c in test.items() if n not in NOT_METRICS and row < len(c)})
    values["epoch"] = epoch
    train = record.history.get("Train", {})
    if epoch in train.get("epoch", []):
        row = train["epoch"].index(epoch)
        values.update({f"Train {n}": c[row] for n, c in train.items() if n != "epoch"})
    return values


def statistic(values: Sequence[float]) -> Stat:
    """Mean and population std of the finite values (NaN when there are none)."""
    finite = [v for v in values if isinstance(v, float) and math.isfinite(v)]
    if not finite:
        return Stat(math.nan, math.nan, 0)
    mean = sum(finite) / len(finite)
    return Stat(mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite)), len(finite))


def group_table(group: Group, protocol: str) -> dict[str, Stat]:
    """``{column: Stat}`` over the group's seeds."""
    per_run = [run_values(run, protocol) for run in group.runs]
    columns = list(dict.fromkeys(name for values in per_run for name in values))
    return {name: statistic([v.get(name, math.nan) for v in per_run]) for name in columns}


def ers_table(group: Group) -> dict[str, dict[str, Stat]]:
    """``{profile: {term: Stat of the raw values, "ERS": Stat}}`` over the group's swipes."""
    result = {}
    profiles = dict.fromkeys(p for run in group.runs for p in run.swipes)
    for profile in profiles:
        rows = []
        for run in group.runs:
            if profile in run.swipes:
                terms = ers_terms(run.swipes[profile].content, run.swipes[profile].path)
                rows.append({**{t: raw for t, (raw, _) in terms.items()}, "ERS": ers_score(terms)})
        result[profile] = {name: statistic([r[name] for r in rows]) for name in [*ERS_TERMS, "ERS"]}
    return result


def test_metric_columns(groups: Sequence[Group]) -> list[str]:
    """The test metrics of the groups' runs, in the order of their ``--evaluation_metrics``."""
    seen: dict[str, None] = {}
    for group in groups:
        for run in group.runs:
            for name in run.history.get("Test", {}):
                if name not in NOT_METRICS:
                    seen.setdefault(name)
    return list(seen)


def partial_swipe(group: Group, profile: str) -> bool:
    return any(run.swipes[profile].partial for run in group.runs if profile in run.swipes)


def describe(record: RunRecord) -> dict[str, Any]:
    """The options a reader needs to tell runs apart in ``runs.csv``."""
    keys = ("dataset", "group", "seed", "loss", "batch_mining", "arch", "defense", "n_epochs")
    return {key: record.options.get(key) for key in keys}


def method_name(label: str) -> str:
    """A group's method across datasets: ``CUB_Margin_b12_Distance`` → ``Margin_b12_Distance``,
    ``CARreg_Contrastive`` → ``R-Contrastive`` (the reference's naming); others unchanged."""
    match = _DATASET_PREFIX.match(label)
    if not match:
        return label
    return ("R-" if match.group(1) else "") + match.group(2)
