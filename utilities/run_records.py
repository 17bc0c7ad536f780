"""Finished training runs as ``RunRecord``s for ``aggregate.py``: from local run folders
(``options.json``, ``CSV_Logs/``, ``training_summary.json``, swipe JSONs) and from W&B runs."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import pathlib
import re
from typing import Any

from metrics.ers import ERS_PROFILES, SUBSET_KEY, read_swipe
from utilities.errors import ConfigError
from utilities.wandb_runs import WandbRun

History = dict[str, dict[str, list[float]]]  # split -> column -> values, "epoch" first
_SWIPE = re.compile(r"^checkpoint_last\.pth\.(\w+?)(\.first\d+)?\.json$")


@dataclasses.dataclass
class Swipe:
    profile: str
    content: dict[str, Any]
    partial: bool  # the first batches only (``eval.py --attack_batches``)
    path: str


@dataclasses.dataclass
class RunRecord:
    """One run: where it came from, its options, its per-epoch history and swipes."""

    source: str
    name: str
    options: dict[str, Any]
    history: History
    finished: bool
    swipes: dict[str, Swipe] = dataclasses.field(default_factory=dict)

    @property
    def seed(self) -> Any:
        return self.options.get("seed")

    @property
    def dataset(self) -> str:
        return str(self.options.get("dataset", "?"))


def run_folders(root: str | pathlib.Path) -> list[pathlib.Path]:
    """The run folders at or below ``root``: folders holding ``options.json`` and ``CSV_Logs/``."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise ConfigError(f"FOLDER: {root} is not a folder; expected a folder of run folders")
    found = [root] if (root / "options.json").is_file() else []
    found += [p.parent for p in root.rglob("options.json") if p.parent != root]
    return sorted(folder for folder in found if (folder / "CSV_Logs").is_dir())


def read_local_run(folder: pathlib.Path) -> RunRecord:
    """A run folder; ConfigError names the file that is not what ``main.py`` writes."""
    options = _read_json_object(folder / "options.json")
    history = {
        path.stem: read_csv_log(path) for path in sorted((folder / "CSV_Logs").glob("*.csv"))
    }
    summary_path = folder / "training_summary.json"
    finished = summary_path.is_file() and bool(_read_json_object(summary_path))
    swipes: dict[str, Swipe] = {}
    for path in sorted(folder.glob("checkpoint_last.pth.*.json")):
        match = _SWIPE.match(path.name)
        if not match or match.group(1) not in ERS_PROFILES:
            continue
        profile, partial = match.group(1), bool(match.group(2))
        if profile in swipes and not swipes[profile].partial:
            continue  # a full swipe wins over a partial one
        try:
            content = read_swipe(path)
        except ConfigError as error:
            raise ConfigError(str(error).replace("--ers: ", "swipe file: ", 1)) from None
        swipes[profile] = Swipe(profile, content, partial or SUBSET_KEY in content, str(path))
    return RunRecord(str(folder), folder.name, options, history, finished, swipes)


def _read_json_object(path: pathlib.Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: cannot read it as JSON ({error}); expected main.py's") from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: holds a {type(content).__name__}; expected a JSON object")
    return content


def read_csv_log(path: pathlib.Path) -> dict[str, list[float]]:
    """``CSV_Logs/<split>.csv``: a header starting with ``epoch``, one row of numbers per epoch
    (an empty cell is NaN)."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it ({error.strerror})") from None
    if not rows or not rows[0] or rows[0][0] != "epoch":
        raise ConfigError(f"{path}: no header starting with 'epoch'; expected main.py's CSV log")
    header, table = rows[0], {name: [] for name in rows[0]}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ConfigError(
                f"{path}: line {number} has {len(row)} values, the header {len(header)}"
            )
        for name, cell in zip(header, row, strict=True):
            try:
                table[name].append(float(cell) if cell else math.nan)
            except ValueError:
                raise ConfigError(
                    f"{path}: line {number}, column {name}: {cell!r} is not a number"
                ) from None
    return table


def wandb_record(run: WandbRun) -> RunRecord:
    """A W&B run (``Split: metric`` keys per ``_step`` = epoch) as a record; finished when the
    run exited cleanly and logged ``n_epochs`` test epochs."""
    history: History = {}
    for row in run.rows:
        step = row.get("_step")
        if not isinstance(step, (int, float)):
            continue
        for key, value in row.items():
            split, sep, name = key.partition(": ")
            if not sep or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            table = history.setdefault(split, {"epoch": []})
            if not table["epoch"] or table["epoch"][-1] != step:
                table["epoch"].append(float(step))
                for column in table.values():
                    if len(column) < len(table["epoch"]):
                        column.append(math.nan)
            column = table.setdefault(name, [math.nan] * len(table["epoch"]))
            column[-1] = float(value)
    epochs = len(history.get("Test", {}).get("epoch", []))
    finished = run.finished and epochs >= int(run.config.get("n_epochs", epochs) or 0)
    return RunRecord(run.source, run.name, dict(run.config), history, finished)
