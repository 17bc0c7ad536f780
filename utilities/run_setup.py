"""Run folders and the options of a resumed run."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import pathlib
from typing import Any

from utilities.errors import ConfigError
from utilities.files import atomic_write_text, remove_stale_temporaries
from utilities.outputs import check_folder_writable

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


def run_dir_name(opt: argparse.Namespace) -> str:
    """``--savename``, or the default: ``<group>_s<seed>`` with ``--log_online``, else
    ``<DATASET>_<arch>_<time>``; ConfigError when it would leave ``--save_path``."""
    if opt.savename != "group_plus_seed":
        name, flag = opt.savename, "--savename"
    elif opt.log_online:
        name, flag = f"{opt.group}_s{opt.seed}", "--group"
    else:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
        name, flag = f"{opt.dataset.upper()}_{opt.arch}_{stamp}", "--group"
    check_folder_name(name, flag)
    return name


def check_run_dir_possible(opt: argparse.Namespace) -> None:
    """Before any work: the run folder's name stays inside ``--save_path`` and can be made."""
    run_dir_name(opt)
    check_folder_writable(pathlib.Path(opt.save_path) / opt.dataset, "--save_path")


def make_run_dir(opt: argparse.Namespace) -> pathlib.Path:
    """``<save_path>/<dataset>/<savename>``, with ``_1``, ``_2``... appended if it exists."""
    name = run_dir_name(opt)
    root = pathlib.Path(opt.save_path) / opt.dataset
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"--save_path: cannot create {root} ({type(error).__name__}: "
            f"{error.strerror or error}); expected a writable folder"
        ) from None
    candidate, counter = root / name, 0
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            counter += 1
            candidate = root / f"{name}_{counter}"
        except OSError as error:
            raise ConfigError(
                f"--save_path: cannot create the run folder {candidate} "
                f"({type(error).__name__}: {error.strerror or error}); expected a writable folder"
            ) from None


def check_folder_name(name: str, flag: str) -> None:
    """A run folder's name stays inside ``--save_path``: no separator, not ``.`` or ``..``."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ConfigError(
            f"{flag}: {name!r} would put the run folder outside --save_path; expected a folder "
            "name without path separators"
        )


def prepare_resumed_run_dir(checkpoint: str) -> pathlib.Path:
    """The folder of a resumed run: writable (checked now, not at the end of an epoch), and
    without the temporary files a killed run left in it."""
    run_dir = pathlib.Path(checkpoint).resolve().parent
    check_folder_writable(run_dir, "--resume")
    remove_stale_temporaries(run_dir)
    for sub in ("CSV_Logs", "Progression_Plots"):
        if (run_dir / sub).is_dir():
            remove_stale_temporaries(run_dir / sub)
    return run_dir


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
