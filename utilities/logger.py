"""Per-run logs: metric history, CSV files and PNG training curves.

The history (``{split: {column: [values]}}``) is the single source of truth: it is stored in every
checkpoint, and the CSV files and plots are rewritten from it atomically after each epoch, so a
resumed run never duplicates or loses rows. matplotlib is imported when the first plot is drawn
(``pyplot()``), so ``--help`` and evaluations do not pay for its import.
"""

from __future__ import annotations

import csv
import io
import math
import pathlib
from types import ModuleType
from typing import Any

from utilities.files import atomic_write, atomic_write_text

History = dict[str, dict[str, list[float]]]


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class RunLog:
    """Metric history of one run, written as ``CSV_Logs/<split>.csv`` and ``Progression_Plots/``."""

    def __init__(self, run_dir: str | pathlib.Path, history: History | None = None) -> None:
        self.run_dir = pathlib.Path(run_dir)
        self.history: History = history if history is not None else {}

    def log(self, split: str, epoch: int, values: dict[str, float]) -> None:
        table = self.history.setdefault(split, {"epoch": []})
        table["epoch"].append(float(epoch))
        for name, value in values.items():
            column = table.setdefault(name, [math.nan] * (len(table["epoch"]) - 1))
            column.append(float(value))

    def improves(self, split: str, name: str, value: float, higher_is_better: bool) -> bool:
        """Whether ``value`` beats every earlier value of the column (NaN never does; the first
        finite value always does)."""
        if not math.isfinite(value):
            return False
        earlier = [v for v in self.history.get(split, {}).get(name, []) if math.isfinite(v)]
        if not earlier:
            return True
        return value > max(earlier) if higher_is_better else value < min(earlier)

    def write(self) -> None:
        for split, table in self.history.items():
            self._write_csv(split, table)
            self._write_plot(split, table)

    def _write_csv(self, split: str, table: dict[str, list[float]]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        columns = list(table)
        writer.writerow(columns)
        for row in zip(*(table[c] for c in columns), strict=False):
            writer.writerow([int(row[0]), *row[1:]])
        atomic_write_text(self.run_dir / "CSV_Logs" / f"{split}.csv", buffer.getvalue())

    def _write_plot(self, split: str, table: dict[str, list[float]]) -> None:
        names = [c for c in table if c != "epoch"]
        if not names:
            return
        cols = min(3, len(names))
        rows = math.ceil(len(names) / cols)
        plt = pyplot()
        figure, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
        for axis, name in zip(axes.flat, names, strict=False):
            axis.plot(table["epoch"], table[name], marker="o", markersize=3)
            axis.set_title(f"{split}: {name}")
            axis.set_xlabel("epoch")
            axis.grid(alpha=0.3)
        for axis in list(axes.flat)[len(names) :]:
            axis.axis("off")
        figure.tight_layout()
        target = self.run_dir / "Progression_Plots" / f"{split}.png"
        atomic_write(target, lambda tmp: figure.savefig(tmp, format="png", dpi=80))
        plt.close(figure)


def best_epoch(table: dict[str, list[float]], name: str, higher_is_better: bool) -> int | None:
    """Row index of the best finite value of ``name`` (the first of equal ones), or None."""
    rows = [(v, i) for i, v in enumerate(table.get(name, [])) if math.isfinite(v)]
    if not rows:
        return None
    pick = max if higher_is_better else min
    best = pick(v for v, _ in rows)
    return next(i for v, i in rows if v == best)


def summary(
    history: History,
    splits: list[str],
    storage_metrics: list[str],
    higher_is_better: dict[str, bool],
) -> dict[str, Any]:
    """The run's ``training_summary.json``: per split, every column at the last epoch and, per
    ``--storage_metrics`` key, the best epoch (highest, or lowest for metrics better when
    lower; NaN never wins) with every metric of that epoch."""
    result: dict[str, Any] = {}
    for split in ["Train", *[s for s in splits if s != "Train"]]:
        table = history.get(split, {})
        if not table.get("epoch"):
            continue

        def row(index: int, table: dict[str, list[float]] = table) -> dict[str, float]:
            return {name: values[index] for name, values in table.items() if index < len(values)}

        entry: dict[str, Any] = {"last": row(len(table["epoch"]) - 1), "best": {}}
        for name in storage_metrics:
            index = best_epoch(table, name, higher_is_better.get(name, True))
            if index is not None:
                entry["best"][name] = {
                    "epoch": int(table["epoch"][index]),
                    "value": table[name][index],
                    "higher_is_better": higher_is_better.get(name, True),
                    "metrics": row(index),
                }
        result[split] = entry
    return result
