"""The one `Registry` class every component package uses.

Each package creates its registry in its ``__init__.py``
(``CRITERIA = Registry("loss", "--loss")``),
registers components at their definition site with ``@CRITERIA.register("margin")`` and looks them
up with ``CRITERIA.get(key)``. An unknown key raises :class:`ConfigError` naming the flag, the valid
keys and the closest match, so the command-line entry points can print one line and exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from utilities.errors import ConfigError

T = TypeVar("T")


class Registry:
    """A name -> component mapping filled by the ``register`` decorator.

    ``kind`` is a human-readable noun ("loss", "batch miner"), ``flag`` the command-line flag that
    selects from this registry; both appear in error messages.
    """

    def __init__(self, kind: str, flag: str) -> None:
        self.kind = kind
        self.flag = flag
        self._entries: dict[str, Any] = {}

    def register(self, key: str) -> Callable[[T], T]:
        """Decorator: register the decorated class or function under ``key``."""

        def decorate(component: T) -> T:
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = component
            with contextlib.suppress(AttributeError, TypeError):
                component.registry_key = key  # type: ignore[attr-defined]
            return component

        return decorate

    def get(self, key: str) -> Any:
        """The component registered as ``key``; ConfigError naming the closest key otherwise."""
        if key in self._entries:
            return self._entries[key]
        raise ConfigError(self.unknown_key_message(key))

    def unknown_key_message(self, key: str, *spellings: str) -> str:
        """One line naming the flag, the unknown ``key``, the closest valid key and all of them."""
        close = closest_name(key, self.keys(), *spellings)
        hint = f"; did you mean {close!r}?" if close else ""
        return f"{self.flag}: unknown {self.kind} {key!r}{hint} Valid: {', '.join(self.keys())}"

    def keys(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> list[tuple[str, Any]]:
        return sorted(self._entries.items())

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._entries)

    def add_arguments(self, parser: argparse.ArgumentParser, title: str) -> None:
        """Add one argument group holding the flags every registered component declares.

        A component declares its own flags with a static ``add_arguments(group)`` method, so a flag
        lives next to the code that reads it.
        """
        group = parser.add_argument_group(title)
        for _, component in self.items():
            declare = getattr(component, "add_arguments", None)
            if declare is not None:
                declare(group)


def closest_name(name: str, valid: list[str], *spellings: str) -> str | None:
    """The valid name meant by ``name``: one equal to it (or to one of the other ``spellings``)
    up to case first (``NMI`` -> ``nmi``, ``qa`` -> ``QA``), else the most similar by
    ``difflib`` ratio, case ignored; ``None`` when ``valid`` is empty."""
    folded = {v.lower(): v for v in valid}
    for spelling in (name, *spellings):
        if spelling.lower() in folded:
            return folded[spelling.lower()]
    close = difflib.get_close_matches(name.lower(), list(folded), n=1, cutoff=0.0)
    return folded[close[0]] if close else None


def import_components(package: str, path: list[str]) -> None:
    """Import every module of ``package`` (its ``__path__``), so each component's
    ``@REGISTRY.register`` decorator runs; a new component is one new file, no list to edit."""
    for module in sorted(pkgutil.iter_modules(path), key=lambda info: info.name):
        importlib.import_module(f"{package}.{module.name}")
