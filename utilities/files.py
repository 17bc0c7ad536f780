"""Atomic file writes: a temporary file in the same folder, then a rename.

The temporary file is removed when the write fails, gets the permissions of an ordinary new file
(0666 minus the user's umask, not ``mkstemp``'s 0600) and is named ``.<name>.<random>.tmp``, so
``remove_stale_temporaries`` can clean the ones a killed process left behind.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Callable


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_current_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``path``; readers never see half a file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)

    atomic_write(path, write)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Delete the ``.*.tmp`` files an interrupted :func:`atomic_write` left in ``folder``."""
    stale = [p for p in pathlib.Path(folder).glob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
