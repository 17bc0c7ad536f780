"""Run folders and the options of a resumed run."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import pathlib
from typing import Any

from utilities.errors import ConfigError
from utilities.files import atomic_write_text

# Flags a resumed run may change; everything else is taken from the checkpoint.
RESUME_OVERRIDABLE = {
    "n_epochs",
    "device",
    "gpu",
    "evaluate_on_gpu",
    "num_workers",
    "source_path",
    "log_online",
}


def make_run_dir(opt: argparse.Namespace) -> pathlib.Path:
    """``<save_path>/<dataset>/<savename>``, with ``_1``, ``_2``... appended if it exists."""
    if opt.savename == "group_plus_seed":
        if opt.log_online:
            name = f"{opt.group}_s{opt.seed}"
        else:
            stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
            name = f"{opt.dataset.upper()}_{opt.arch}_{stamp}"
    else:
        name = opt.savename
    root = pathlib.Path(opt.save_path) / opt.dataset
    root.mkdir(parents=True, exist_ok=True)
    candidate, counter = root / name, 0
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            counter += 1
            candidate = root / f"{name}_{counter}"


def resumed_options(
    stored: dict[str, Any], current: argparse.Namespace, explicit: set[str]
) -> argparse.Namespace:
    """The checkpoint's options, with the few flags a resumed run may change taken from the CLI.

    Flags newer than the checkpoint (absent from its options) take their current defaults, which
    keep the behaviour the run was started with (e.g. ``--defense none``).
    """
    opt = argparse.Namespace(**{**vars(current), **stored})
    for name in sorted(explicit - {"resume"}):
        value = getattr(current, name)
        if name in RESUME_OVERRIDABLE:
            setattr(opt, name, value)
        elif stored.get(name) != value:
            raise ConfigError(
                f"--{name}: a resumed run keeps the options of its checkpoint "
                f"({stored.get(name)!r}, given {value!r}); only "
                f"{', '.join('--' + n for n in sorted(RESUME_OVERRIDABLE))} may change"
            )
    opt.resume = current.resume
    return opt


def json_safe(content: Any) -> Any:
    """``content`` with every NaN or infinite float replaced by ``None`` (JSON ``null``)."""
    if isinstance(content, float):
        return content if math.isfinite(content) else None
    if isinstance(content, dict):
        return {key: json_safe(value) for key, value in content.items()}
    if isinstance(content, (list, tuple)):
        return [json_safe(value) for value in content]
    return content


def write_json(path: pathlib.Path, content: Any) -> None:
    """Strict JSON (non-finite numbers become ``null``), keys in insertion order, atomically."""
    text = json.dumps(json_safe(content), indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n")
