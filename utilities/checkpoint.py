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

import numpy as np
import torch

from utilities.errors import ConfigError
from utilities.files import atomic_write

FORMAT = "dml-toolkit-checkpoint"
VERSION = 1
_BEST = {"model": dict, "criterion": dict, "options": dict, "epoch": int, "history": dict}
REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "best": _BEST,
    "last": {
        **_BEST,
        "optimizer": dict,
        "scheduler": dict,
        "scaler": dict,
        "sampler": dict,
        "training_step": dict,
        "rng": dict,
    },
}


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
    kind = payload.get("kind")
    if kind not in REQUIRED:
        raise ConfigError(f"{flag}: {path} has checkpoint kind {kind!r}; expected last or best")
    wrong = [
        key for key, kinds in REQUIRED[kind].items() if not isinstance(payload.get(key), kinds)
    ]
    if wrong:
        raise ConfigError(
            f"{flag}: {path} is damaged: {', '.join(wrong)} missing or of the wrong type; "
            "expected a checkpoint written by main.py"
        )
    return payload


def restore(part: Any, state: Any, name: str, path: str | os.PathLike, flag: str) -> None:
    """``part.load_state_dict(state)``; ConfigError naming the file when the state does not fit
    (other shapes, missing or extra entries)."""
    try:
        part.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
        reason = " ".join(str(error).split())[:200]
        raise ConfigError(
            f"{flag}: the {name} state in {path} does not fit this run ({reason}); expected a "
            "checkpoint written by main.py with the same options and data"
        ) from None


def split_size(split: Any) -> dict[str, int]:
    """Samples and classes of a split, stored in checkpoints so that ``eval.py`` notices data
    that changed since training."""
    return {"samples": len(split), "classes": len(set(np.asarray(split.labels).tolist()))}


def options_from_checkpoint(payload: dict[str, Any]) -> argparse.Namespace:
    return argparse.Namespace(**payload["options"])
