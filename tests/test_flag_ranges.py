"""Every numeric flag of main.py and eval.py is range-checked by its argparse type."""

from __future__ import annotations

import argparse

import pytest

import eval as eval_cli
import parameters
from utilities.flag_types import Range

PARSERS = {"main.py": parameters.build_parser(), "eval.py": eval_cli.build_parser()}
NUMERIC = [
    (program, action)
    for program, parser in PARSERS.items()
    for action in parser._actions
    if isinstance(action.type, Range)
]


def test_every_numeric_flag_has_a_range():
    bare = [
        f"{program} {action.option_strings[0]}"
        for program, parser in PARSERS.items()
        for action in parser._actions
        if action.type in (int, float)
    ]
    assert not bare, f"give these flags a utilities.flag_types range: {bare}"
    assert len(NUMERIC) > 60


def outside(kind: Range) -> list[str]:
    """Values just outside the range (and NaN for floats)."""
    values = ["nan", "inf"] if kind.kind is float else ["1.5"]
    step = 1 if kind.kind is int else 1e-9
    if kind.low is not None:
        values.append(str(kind.low if kind.open_low else kind.low - step))
    if kind.high is not None:
        values.append(str(kind.high if kind.open_high else kind.high + step))
    return [v for v in values if v not in {str(a) for a in kind.also}]


@pytest.mark.parametrize(
    ("program", "action"), NUMERIC, ids=[f"{p}{a.option_strings[0]}" for p, a in NUMERIC]
)
def test_numeric_flag_rejects_values_outside_its_range(program, action):
    for value in outside(action.type):
        with pytest.raises(argparse.ArgumentTypeError, match="expected"):
            action.type(value)
    defaults = action.default if isinstance(action.default, list) else [action.default]
    for default in defaults:
        if default is not None:
            assert action.type(str(default)) == default  # the default is in range


@pytest.mark.parametrize(
    "flags",
    [["--bs", "0"], ["--bs", "-4"], ["--embed_dim", "0"], ["--num_workers", "-1"],
     ["--seed", "-1"], ["--lr", "-1"], ["--tau", "0"], ["--loss_triplet_margin", "nan"]],
)  # fmt: skip
def test_main_refuses_bad_numbers_in_one_line(capsys, flags):
    with pytest.raises(SystemExit) as stop:
        parameters.parse_args(flags)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument {flags[0]}" in err[0] and "expected" in err[0]
