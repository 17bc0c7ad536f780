"""Model selection: which epoch a run reports (``--model_selection``).

- ``val``: the epoch with the best first ``--storage_metrics`` value on the validation split
  (``--use_tv_split``); the clean protocol.
- ``last``: the last epoch; the clean protocol without a validation split.
- ``test``: the epoch with the best value on the TEST split, what the IDML, Proxy-Anchor and DADA
  references did (methods.md §A.4, §B.6). For reproducing their numbers only: the choice sees the
  test labels, so its numbers are optimistic. It is marked as such in the printed result and in
  ``training_summary.json``.
- ``auto`` (default): ``val`` with ``--use_tv_split``, else ``last``.
"""

from __future__ import annotations

import argparse
from typing import Any

from utilities.errors import ConfigError
from utilities.logger import History, best_epoch

RULES = ("auto", "last", "val", "test")
TEST_SELECTION_NOTE = (
    "selected on the TEST split (best test epoch, as the IDML/PA/DADA references): for "
    "reproduction only, optimistic; not a clean protocol"
)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--model_selection",
        default="auto",
        choices=RULES,
        help="the epoch the run reports: val (best first --storage_metrics value on the "
        "validation split), last, or test (best TEST epoch, as IDML/PA/DADA; reproduction "
        "only); auto = val with --use_tv_split, else last",
    )


def rule(opt: argparse.Namespace) -> str:
    """``--model_selection`` with ``auto`` resolved; ConfigError for ``val`` without a split."""
    if opt.model_selection == "auto":
        return "val" if opt.use_tv_split else "last"
    if opt.model_selection == "val" and not opt.use_tv_split:
        raise ConfigError(
            "--model_selection: 'val' needs a validation split; add --use_tv_split or choose "
            "last or test"
        )
    return opt.model_selection


def selected(
    history: History, selection: str, metric: str, higher_is_better: bool
) -> dict[str, Any] | None:
    """The selected epoch and the test metrics at it (None before any epoch)."""
    test = history.get("Test", {})
    if not test.get("epoch"):
        return None
    index: int | None = len(test["epoch"]) - 1
    if selection in ("val", "test"):
        table = history.get("Val" if selection == "val" else "Test", {})
        index = best_epoch(table, metric, higher_is_better)
        if index is not None:
            epoch = table["epoch"][index]
            index = test["epoch"].index(epoch)
    if index is None:
        return None
    entry: dict[str, Any] = {
        "rule": selection,
        "metric": metric if selection != "last" else None,
        "epoch": int(test["epoch"][index]),
        "test": {name: values[index] for name, values in test.items() if name != "epoch"},
    }
    if selection == "test":
        entry["note"] = TEST_SELECTION_NOTE
    return entry
