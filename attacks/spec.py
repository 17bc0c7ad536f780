"""The attack-string grammar of robrank: ``TYPE:key=val:key=val...`` (robustness.md §2.1).

``CA:pm=+:W=1:eps=0.30196:alpha=0.011764:pgditer=32`` attacks candidates, pulling them towards
one random query. Keys: ``eps`` (L∞ radius in [0,1] pixel space), ``alpha`` (PGD step),
``pgditer`` (iterations; 1 = FGSM with step ``eps``), ``pm`` (``+``/``-``), ``W`` (queries, CA),
``M`` (candidates, QA/SPQA/FOA) and ``rinit`` (1 = random start; robrank's env ``RINIT``).
Omitted: eps = 4/255, alpha = 1/255, pgditer = 24, rinit = 0.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from utilities.errors import ConfigError
from utilities.flag_types import Range, pixel_radius, positive_int, probability

DEFAULT_EPS = 4.0 / 255.0
DEFAULT_ALPHA = 1.0 / 255.0
DEFAULT_PGDITER = 24
_TYPE = re.compile(r"^\w+$")
_PAIR = re.compile(r"^(\w+)=([\w+\-.]+)$")
COMMON_KEYS = ("eps", "alpha", "pgditer", "rinit")


@dataclass(frozen=True)
class AttackSpec:
    """One parsed attack string; ``pm``/``W``/``M`` are None where the type takes none."""

    string: str
    type: str
    eps: float = DEFAULT_EPS
    alpha: float = DEFAULT_ALPHA
    pgditer: int = DEFAULT_PGDITER
    pm: str | None = None
    W: int | None = None  # robrank's key
    M: int | None = None  # robrank's key
    rinit: bool = False

    @property
    def sign(self) -> str:
        """``"+"``/``"-"``, or ``""`` for attacks without a direction."""
        return self.pm or ""


def _fail(string: str, expected: str) -> ConfigError:
    return ConfigError(f"--attack: bad attack string {string!r}; expected {expected}")


RANGES = {
    "eps": probability,  # ε = 0 is the benign point of robrank's qccurve28
    "alpha": pixel_radius,
    "pgditer": positive_int,
    "W": positive_int,
    "M": positive_int,
    "rinit": Range(int, 0, 1),
}


def _number(string: str, key: str, value: str) -> float | int:
    try:
        return RANGES[key](value)
    except argparse.ArgumentTypeError as error:
        raise _fail(string, f"{key}= {RANGES[key].describe()}, got {value!r}") from error


def parse_attack_string(string: str) -> AttackSpec:
    """Parse and validate an attack string against the keys its TYPE accepts."""
    from attacks import ATTACKS

    grammar = "TYPE:key=val:... such as CA:pm=+:W=1:eps=0.30196:alpha=0.011764:pgditer=32"
    head, *pairs = string.split(":")
    if not _TYPE.match(head):
        raise _fail(string, grammar)
    if head not in ATTACKS:
        raise ConfigError(f"{ATTACKS.unknown_key_message(head)} (in {string!r})")
    attack = ATTACKS.get(head)
    allowed = COMMON_KEYS + attack.keys
    values: dict[str, object] = {}
    for pair in pairs:
        match = _PAIR.match(pair)
        if match is None:
            raise _fail(string, f"key=value pairs, got {pair!r}; {grammar}")
        key, value = match.groups()
        if key not in allowed:
            raise _fail(string, f"keys of {head} among {', '.join(allowed)}, got {key!r}")
        if key in values:
            raise _fail(string, f"each key once, got {key!r} twice")
        if key == "pm":
            if value not in ("+", "-"):
                raise _fail(string, f"pm=+ or pm=-, got {value!r}")
            values[key] = value
        elif key == "rinit":
            values[key] = bool(_number(string, key, value))
        else:
            values[key] = _number(string, key, value)
    missing = [key for key in attack.keys if key not in values and key in attack.required]
    if missing:
        raise _fail(string, f"{head} with {', '.join(k + '=' for k in missing)} given")
    return AttackSpec(string=string, type=head, **values)  # type: ignore[arg-type]
