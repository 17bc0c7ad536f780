"""Range-checked argparse types: every numeric flag says what it accepts.

``type=positive_int`` (and friends) turns a bad value into argparse's one-line error naming the
flag, the value and the range (``argument --bs: expected an integer >= 1, got '0'``), before any
work starts. Floats are always finite. ``tests/test_flag_ranges.py`` checks that every numeric
flag of ``main.py`` and ``eval.py`` uses one of these types.
"""

from __future__ import annotations

import argparse
import math


class Range:
    """An argparse type: parse as ``kind`` and check ``low <= x <= high`` (``<`` where open);
    values in ``also`` (sentinels such as -1 for "off") are accepted as they are."""

    def __init__(
        self,
        kind: type,
        low: float | None = None,
        high: float | None = None,
        *,
        open_low: bool = False,
        open_high: bool = False,
        also: tuple[float, ...] = (),
    ) -> None:
        self.kind, self.low, self.high = kind, low, high
        self.open_low, self.open_high, self.also = open_low, open_high, also
        self.__name__ = self.describe()  # argparse names the type in some messages

    def describe(self) -> str:
        noun = "an integer" if self.kind is int else "a finite number"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"{'<' if self.open_high else '<='} {self.high:g}")
        text = f"{noun} {' and '.join(bounds)}".strip()
        if self.also:
            text += " or " + " or ".join(f"{value:g}" for value in self.also)
        return text

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}") from None
        if value in self.also:
            return value
        if self.kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}")
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}")
        if self.high is not None and (value >= self.high if self.open_high else value > self.high):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}")
        return value

    def __repr__(self) -> str:
        return f"Range({self.describe()})"


positive_int = Range(int, 1)
nonnegative_int = Range(int, 0)
positive_float = Range(float, 0, open_low=True)
nonnegative_float = Range(float, 0)
finite_float = Range(float)
probability = Range(float, 0, 1)
open_fraction = Range(float, 0, 1, open_low=True, open_high=True)
pixel_radius = Range(float, 0, 1, open_low=True)
