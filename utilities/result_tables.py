"""Markdown, CSV and LaTeX tables of mean ± std (best per column in bold) for ``aggregate.py``."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Sequence

from metrics.ers import ERS_TERMS
from utilities.aggregation import Stat, higher_is_better

PERCENT_PREFIXES = ("e_recall", "c_recall", "nmi", "c_nmi", "ami", "f1", "c_f1", "mAP", "c_mAP",
                    "precision_at_1", "r_precision", "mrr")  # fmt: skip
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}  # fmt: skip


@dataclasses.dataclass
class Column:
    """A table column: its key, the scale its values are shown at, decimals, and the direction
    that makes a value best (None: no best is marked)."""

    key: str
    scale: float = 1.0
    decimals: int = 3
    higher: bool | None = True
    spread: bool = True  # False: a count, shown without ± std

    @property
    def header(self) -> str:
        return f"{self.key} (×100)" if self.scale == 100 else self.key


@dataclasses.dataclass
class Table:
    title: str
    note: str
    columns: list[Column]
    rows: dict[str, dict[str, Stat]]  # row label -> column key -> Stat

    def best(self, column: Column) -> set[str]:
        """The rows whose mean is the column's best (every tied one)."""
        if column.higher is None:
            return set()
        means = {r: s[column.key].mean for r, s in self.rows.items() if column.key in s}
        finite = {r: m for r, m in means.items() if math.isfinite(m)}
        if len(finite) < 2:
            return set()
        best = (max if column.higher else min)(finite.values())
        return {r for r, m in finite.items() if m == best}


def metric_column(name: str) -> Column:
    percent = name.split("@")[0] in PERCENT_PREFIXES or name.startswith("mAP")
    return Column(name, 100.0 if percent else 1.0, 2 if percent else 3, higher_is_better(name))


def ers_columns() -> list[Column]:
    """The ten raw ERS terms (more robust: the way their normalised score rises) and the ERS."""
    columns = [
        Column(term, 1.0, 3 if term in ("TMA", "ES:D") else 1, normalise(1.0) > normalise(0.0))
        for term, (*_, normalise) in ERS_TERMS.items()
    ]
    return [*columns, Column("ERS", 1.0, 1, True)]


def cell(stat: Stat | None, column: Column) -> tuple[str, str] | None:
    """``(mean, std)`` as shown (std ``""`` for a count), or None for no value."""
    if stat is None or not math.isfinite(stat.mean):
        return None
    mean = f"{stat.mean * column.scale:.{column.decimals}f}"
    std = f"{stat.std * column.scale:.{column.decimals}f}" if column.spread else ""
    return mean, std


def markdown(table: Table, label_header: str = "group") -> str:
    lines = [f"### {table.title}", "", table.note, ""]
    lines.append("| " + " | ".join([label_header, *(c.header for c in table.columns)]) + " |")
    lines.append("|---|" + "---:|" * len(table.columns))
    bold = {c.key: table.best(c) for c in table.columns}
    for label, stats in table.rows.items():
        cells = []
        for column in table.columns:
            shown = cell(stats.get(column.key), column)
            text = "–" if shown is None else " ± ".join(part for part in shown if part)
            cells.append(f"**{text}**" if label in bold[column.key] else text)
        lines.append("| " + " | ".join([label.replace("|", "\\|"), *cells]) + " |")
    return "\n".join(lines)


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex(table: Table, label_header: str = "group") -> str:
    """A booktabs ``tabular`` in a ``table`` float, cells ``$mean\\pm std$``, best in bold."""
    spec = "l" + "r" * len(table.columns)
    header = " & ".join(latex_escape(h) for h in [label_header, *(c.header for c in table.columns)])
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(table.title)}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        header + r" \\",
        r"\midrule",
    ]
    bold = {c.key: table.best(c) for c in table.columns}
    for label, stats in table.rows.items():
        cells = [latex_escape(label)]
        for column in table.columns:
            shown = cell(stats.get(column.key), column)
            if shown is None:
                cells.append("--")
            else:
                math_text = rf"{shown[0]}\pm{shown[1]}" if shown[1] else shown[0]
                bold_text = label in bold[column.key]
                cells.append(rf"$\mathbf{{{math_text}}}$" if bold_text else f"${math_text}$")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def csv_rows(table: Table, prefix: Sequence[tuple[str, str]] = ()) -> list[dict[str, object]]:
    """One dict per row: ``prefix`` columns, the label, then ``<key>_mean``, ``<key>_std`` and
    ``<key>_n`` per column (a count: ``<key>``), unscaled."""
    rows = []
    for label, stats in table.rows.items():
        row: dict[str, object] = {**dict(prefix), "group": label}
        for column in table.columns:
            stat = stats.get(column.key)
            if not column.spread:
                row[column.key] = "" if stat is None else _number(stat.mean)
                continue
            row[f"{column.key}_mean"] = "" if stat is None else _number(stat.mean)
            row[f"{column.key}_std"] = "" if stat is None else _number(stat.std)
            row[f"{column.key}_n"] = "" if stat is None else stat.n
        rows.append(row)
    return rows


def _number(value: float) -> object:
    return repr(value) if math.isfinite(value) else ""


def csv_text(rows: Sequence[dict[str, object]]) -> str:
    """The rows as CSV, the header the union of their keys in first-seen order."""
    header = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
