"""Result files that are never lost: checked before the work, saved elsewhere if writing fails.

``check_writable(path, flag)`` fails at start-up (one ConfigError line) when ``path`` cannot be
written: a folder where the file should be, a file where a folder should be, a folder without
write permission. ``save_result(path, write, flag)`` writes after the work; when that still fails
(the disk filled up, permissions changed) it writes the same content into the current folder or,
failing that, the temporary folder, and raises a ConfigError naming both paths, so the entry
point exits with status 2 and the result is where the message says.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import time
from collections.abc import Callable

from utilities.errors import ConfigError


def _existing_ancestor(path: pathlib.Path) -> pathlib.Path:
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    return ancestor


def check_writable(path: str | os.PathLike, flag: str) -> None:
    """ConfigError when ``path`` (a file to create or replace) cannot be written."""
    path = pathlib.Path(path)
    try:
        _check_writable(path, flag)
    except OSError as error:  # a name too long, a loop of links...
        raise ConfigError(f"{flag}: cannot write {path} ({error.strerror or error})") from None


def _check_writable(path: pathlib.Path, flag: str) -> None:
    if path.is_dir():
        raise ConfigError(f"{flag}: {path} is a folder; expected a file path")
    ancestor = _existing_ancestor(path.absolute())
    if not ancestor.is_dir():
        raise ConfigError(f"{flag}: cannot write {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag}: cannot write {path}: the folder {ancestor} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{flag}: cannot write {path}: the file is read-only")


def check_folder_writable(folder: str | os.PathLike, flag: str) -> None:
    """ConfigError when files cannot be created in ``folder`` (created later if missing)."""
    check_writable(pathlib.Path(folder) / ".write-check", flag)


def save_result(path: str | os.PathLike, write: Callable[[pathlib.Path], None], flag: str) -> None:
    """``write(path)``; if that fails, ``write`` a fallback copy and raise ConfigError naming it."""
    path = pathlib.Path(path)
    try:
        write(path)
        return
    except OSError as error:
        reason = f"{type(error).__name__}: {error.strerror or error}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for folder in (pathlib.Path.cwd(), pathlib.Path(tempfile.gettempdir())):
        fallback = folder / f"{path.name}.{stamp}.fallback{path.suffix}"
        try:
            write(fallback)
        except OSError:
            continue
        raise ConfigError(
            f"{flag}: could not write {path} ({reason}); the result is saved in {fallback}"
        )
    raise ConfigError(f"{flag}: could not write {path} ({reason}) nor a fallback copy")
