"""Checkpoints: state dicts, RNG states, history and options as plain types.

Written atomically and read with ``torch.load(weights_only=True)``, so loading a checkpoint can
never run code. ``kind`` is ``"last"`` (everything needed to resume) or ``"best"`` (model,
loss parameters and options: enough to evaluate or attack).
"""

from __future__ import annotations

import argparse
import os
import pathlib
from typing import Any

import torch

from utilities.errors import ConfigError
from utilities.files import atomic_write

FORMAT = "dml-toolkit-checkpoint"
VERSION = 1


def plain_options(opt: argparse.Namespace) -> dict[str, Any]:
    """The options as JSON-like plain types."""
    return {key: value for key, value in vars(opt).items() if not key.startswith("_")}


def save_checkpoint(path: str | os.PathLike, kind: str, **content: Any) -> None:
    """Write a checkpoint atomically (temporary file, then rename)."""
    payload = {"format": FORMAT, "version": VERSION, "kind": kind, **content}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike, flag: str) -> dict[str, Any]:
    """Read one of our checkpoints; anything else is a :class:`ConfigError` naming ``flag``."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"{flag}: no checkpoint file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or corrupt files
        raise ConfigError(
            f"{flag}: {path} is not a checkpoint of this toolkit "
            f"(unreadable with weights_only=True: {type(error).__name__})"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(
            f"{flag}: {path} is not a checkpoint of this toolkit (no '{FORMAT}' format marker; "
            "expected a checkpoint_*.pth written by main.py)"
        )
    if payload.get("version") != VERSION:
        raise ConfigError(
            f"{flag}: {path} has checkpoint version {payload.get('version')}, expected {VERSION}"
        )
    return payload


def options_from_checkpoint(payload: dict[str, Any]) -> argparse.Namespace:
    return argparse.Namespace(**payload["options"])
