"""robrank's model-name grammar for ``--defense`` (robustness.md §4.6).

    [g](rh|hm)(kl|l2|et)<source><destination>[i]

``g``: the gradual adversary g_LGA; ``rh``: fixed anchor, ``hm``: all three members perturbed;
``kl|l2|et``: the PGD objective; source and destination letters r (``anchor_random``, robrank's
spc2-random), m (``semihard``), s (``softhard``), d (``distance``), h (``hard``); ``i``: ICS. So
``--defense ghmetsmi`` is HM[S, g_LGA]&ICS: gradual, no fixed anchor, thresholded Euclidean,
softhard → semihard, ICS.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from utilities.errors import ConfigError

HM_NAME = re.compile(
    r"(?P<gradual>g?)(?P<anchor>rh|hm)(?P<objective>kl|l2|et)"
    r"(?P<source>[rmsdh])(?P<destination>[rmsdh])(?P<ics>i?)"
)
MINER_LETTERS = {
    "r": "anchor_random",
    "m": "semihard",
    "s": "softhard",
    "d": "distance",
    "h": "hard",
}


def hm_settings(name: str) -> dict[str, Any] | None:
    """The flags a grammar name stands for, or None when ``name`` is not one."""
    match = HM_NAME.fullmatch(name)
    if match is None:
        return None
    return {
        "defense": "hm",
        "defense_hm_gradual": "linear" if match["gradual"] else "off",
        "defense_hm_fix_anchor": match["anchor"] == "rh",
        "defense_hm_objective": match["objective"],
        "defense_hm_source": MINER_LETTERS[match["source"]],
        "defense_hm_destination": MINER_LETTERS[match["destination"]],
        "defense_ics": bool(match["ics"]),
    }


def resolve_defense(opt: argparse.Namespace, explicit: set[str]) -> None:
    """Replace a grammar name in ``--defense`` by ``hm`` and the flags it stands for.

    A flag given explicitly with another value than the name implies is an error naming both.
    """
    settings = hm_settings(opt.defense)
    if settings is None:
        return
    name = opt.defense
    for dest, value in settings.items():
        if dest in explicit and dest != "defense" and getattr(opt, dest) != value:
            raise ConfigError(
                f"--{dest}: got {getattr(opt, dest)!r}, but --defense {name} means {value!r}; "
                "drop one of them"
            )
        setattr(opt, dest, value)
