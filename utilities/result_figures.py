"""The Revisiting-DML reference's figures for ``aggregate.py``, as PNG and PDF: the metric
correlation matrix, R@1 against the ρ-spectrum, and per-metric bar charts with error bars.
One panel per dataset; every value is a group's mean (± population std) over its seeds."""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from utilities.aggregation import Stat
from utilities.files import atomic_write
from utilities.logger import pyplot

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# dataset -> group label -> column -> Stat
Results = dict[str, dict[str, dict[str, Stat]]]
RHO_COLUMNS = ("Train rho_spectrum@2", "Train rho_spectrum_revisit@2")  # the paper's ρ(Φ)


def save_figure(figure: Figure, stem: pathlib.Path) -> list[pathlib.Path]:
    """``stem.png`` and ``stem.pdf``, each written atomically."""
    written = []
    for suffix in ("png", "pdf"):
        target = stem.with_suffix(f".{suffix}")
        atomic_write(target, lambda tmp, fmt=suffix: figure.savefig(tmp, format=fmt, dpi=100))
        written.append(target)
    pyplot().close(figure)
    return written


def _panels(count: int, width: float = 5.0, height: float = 4.0):
    figure, axes = pyplot().subplots(1, max(count, 1), figsize=(width * max(count, 1), height),
                                     squeeze=False)  # fmt: skip
    return figure, list(axes.flat)


def _note(axis: Axes, text: str) -> None:
    axis.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=axis.transAxes)
    axis.set_xticks([])
    axis.set_yticks([])


def _finite_means(groups: dict[str, dict[str, Stat]], column: str) -> dict[str, Stat]:
    return {
        g: s[column] for g, s in groups.items() if column in s and math.isfinite(s[column].mean)
    }


def correlation_matrix(results: Results, columns: Sequence[str], stem: pathlib.Path) -> list:
    """Pearson correlation across groups of the test metrics' means, per dataset."""
    figure, axes = _panels(len(results), 5.5, 4.5)
    for axis, (dataset, groups) in zip(axes, results.items(), strict=False):
        names = [c for c in columns if len(_finite_means(groups, c)) == len(groups)]
        matrix = np.array([[groups[g][c].mean for c in names] for g in groups])
        if len(groups) < 3 or len(names) < 2 or np.any(matrix.std(0) == 0):
            _note(axis, f"{dataset}: needs ≥ 3 groups and ≥ 2 varying metrics")
            continue
        correlation = np.corrcoef(matrix.T)
        image = axis.imshow(correlation, vmin=-1, vmax=1, cmap="coolwarm")
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axis.set_yticks(range(len(names)), names)
        for (i, j), value in np.ndenumerate(correlation):
            axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
        axis.set_title(f"{dataset}: metric correlation over {len(groups)} groups")
        figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    return save_figure(figure, stem)


def recall_against_rho(results: Results, recall: str, stem: pathlib.Path) -> list:
    """Test ``recall`` against the training embeddings' ρ(Φ) (``rho_spectrum@2``), error bars
    both ways, with a least-squares line and Pearson's r when three or more groups have both."""
    figure, axes = _panels(len(results))
    for axis, (dataset, groups) in zip(axes, results.items(), strict=False):
        rho = next((c for c in RHO_COLUMNS if _finite_means(groups, c)), None)
        if rho is None:
            _note(axis, f"{dataset}: no Train rho_spectrum@2 logged\n(add it to "
                        "--evaluation_metrics, train metrics on)")  # fmt: skip
            continue
        both = [g for g in _finite_means(groups, rho) if g in _finite_means(groups, recall)]
        x = np.array([groups[g][rho].mean for g in both])
        y = np.array([groups[g][recall].mean for g in both])
        axis.errorbar(x, y, xerr=[groups[g][rho].std for g in both],
                      yerr=[groups[g][recall].std for g in both], fmt="o", capsize=3)  # fmt: skip
        for g, xi, yi in zip(both, x, y, strict=True):
            axis.annotate(g, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if len(both) >= 3 and x.std() > 0 and y.std() > 0:
            slope, intercept = np.polyfit(x, y, 1)
            grid = np.linspace(x.min(), x.max(), 10)
            axis.plot(grid, slope * grid + intercept, "--", color="gray")
            axis.set_title(f"{dataset}: r = {np.corrcoef(x, y)[0, 1]:.2f}")
        else:
            axis.set_title(dataset)
        axis.set_xlabel(f"ρ(Φ): {rho}")
        axis.set_ylabel(f"test {recall}")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return save_figure(figure, stem)


def metric_bars(results: Results, column: str, stem: pathlib.Path,
                higher: bool | None = True) -> list:  # fmt: skip
    """Horizontal bars of one column's group means with std error bars, best at the top."""
    most = max((len(g) for g in results.values()), default=1)
    figure, axes = _panels(len(results), 6.0, 1.0 + 0.35 * most)
    for axis, (dataset, groups) in zip(axes, results.items(), strict=False):
        stats = _finite_means(groups, column)
        if not stats:
            _note(axis, f"{dataset}: no {column}")
            continue
        order = [g for g, _ in sorted(stats.items(), key=lambda item: item[1].mean,
                                      reverse=higher is False)]  # fmt: skip
        axis.barh(range(len(order)), [stats[g].mean for g in order],
                  xerr=[stats[g].std for g in order], capsize=3, color="tab:orange")  # fmt: skip
        axis.set_yticks(range(len(order)), order, fontsize=8)
        axis.set_xlabel(column)
        axis.set_title(dataset)
        axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return save_figure(figure, stem)
