"""The ``.npz`` embeddings format of ``eval.py --embeddings`` and ``--save_embeddings``.

Arrays: ``embeddings`` (N×D real numbers), ``labels`` (N integers) and, for the query/gallery
protocol, boolean ``query`` and ``gallery`` masks (both or neither); other arrays are ignored.
Everything is validated where it is read: one ConfigError line names the file, what it holds and
what was expected.
"""

from __future__ import annotations

import pathlib
import zipfile

import numpy as np

from utilities.errors import ConfigError
from utilities.files import atomic_write

FLAG = "--embeddings"
FORMAT = (
    "an .npz archive (numpy.savez) with 'embeddings' (N×D), 'labels' (N) and optional boolean "
    "'query' and 'gallery' masks"
)


def _fail(path: pathlib.Path, found: str) -> ConfigError:
    return ConfigError(f"{FLAG}: {path} {found}; expected {FORMAT}")


def _array(content: np.lib.npyio.NpzFile, key: str, path: pathlib.Path) -> np.ndarray:
    try:
        return np.asarray(content[key])
    except ValueError as error:  # object arrays with allow_pickle=False
        raise _fail(path, f"stores '{key}' as Python objects ({error})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise _fail(path, f"has an unreadable '{key}' ({error})") from None


def read_embeddings(
    path_text: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(embeddings float32 N×D, labels int64 (N,), query mask or None, gallery mask or None)."""
    path = pathlib.Path(path_text)
    if not path.is_file():
        raise ConfigError(f"{FLAG}: no file at {path}")
    try:
        content = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise _fail(path, f"is not a readable .npz file ({error})") from None
    if not isinstance(content, np.lib.npyio.NpzFile):
        raise _fail(path, f"is a single .npy array of shape {np.shape(content)}")
    with content:
        missing = {"embeddings", "labels"} - set(content.files)
        if missing:
            raise _fail(path, f"lacks {', '.join(sorted(missing))}")
        embeddings = _array(content, "embeddings", path)
        labels = _array(content, "labels", path)
        masks = {k: _array(content, k, path) for k in ("query", "gallery") if k in content.files}
    if embeddings.ndim != 2 or embeddings.shape[0] < 2 or embeddings.shape[1] < 1:
        raise _fail(path, f"has embeddings of shape {embeddings.shape} (at least 2×1 needed)")
    is_real = np.issubdtype(embeddings.dtype, np.floating) or np.issubdtype(
        embeddings.dtype, np.integer
    )
    if not is_real:
        raise _fail(path, f"has embeddings of dtype {embeddings.dtype}, not real numbers")
    if not np.isfinite(embeddings).all():
        raise _fail(path, "has NaN or infinite embeddings")
    if labels.shape != (embeddings.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise _fail(
            path,
            f"has labels {labels.dtype} {labels.shape} for {embeddings.shape[0]} embeddings; "
            "integers, one per embedding, were expected",
        )
    if len(masks) == 1:
        raise _fail(path, f"has only '{next(iter(masks))}'; give both masks")
    for key, mask in masks.items():
        if mask.dtype != np.bool_ or mask.shape != labels.shape:
            raise _fail(path, f"has '{key}' {mask.dtype} {mask.shape}, not bool {labels.shape}")
        if not mask.any():
            raise _fail(path, f"has an all-False '{key}' mask (no {key} sample)")
    return (
        embeddings.astype(np.float32),
        labels.astype(np.int64),
        masks.get("query"),
        masks.get("gallery"),
    )


def write_embeddings(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` (``embeddings``, ``labels`` and optional masks) atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    atomic_write(path, write)
