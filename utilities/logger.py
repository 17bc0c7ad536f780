"""Per-run logs: metric history, CSV files and PNG training curves.

The history (``{split: {column: [values]}}``) is the single source of truth: it is stored in every
checkpoint, and the CSV files and plots are rewritten from it atomically after each epoch, so a
resumed run never duplicates or loses rows.
"""

from __future__ import annotations

import csv
import io
import math
import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from utilities.files import atomic_write, atomic_write_text

History = dict[str, dict[str, list[float]]]


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

    def best(self, split: str, name: str) -> float | None:
        values = [v for v in self.history.get(split, {}).get(name, []) if not math.isnan(v)]
        return max(values) if values else None

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


def summary(history: History, splits: list[str]) -> dict[str, Any]:
    """Last and best value of every metric on each split (the run's ``training_summary.json``)."""
    result: dict[str, Any] = {}
    for split in splits:
        table = history.get(split, {})
        result[split] = {
            name: {"last": values[-1], "best": max(values)}
            for name, values in table.items()
            if name != "epoch" and values
        }
    return result
