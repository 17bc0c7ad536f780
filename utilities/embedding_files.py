"""The ``.npz`` embeddings format of ``eval.py --embeddings`` and ``--save_embeddings``.

Arrays: ``embeddings`` (N×D real numbers), ``labels`` (N integers) and, for the query/gallery
protocol, boolean ``query`` and ``gallery`` masks (both or neither); optionally ``uncertainty``
(N×D' real numbers, the IDML uncertainty embedding of each row, written by ``--save_embeddings``
for a model with ``--idml``: read and checked, never used by the metrics); other arrays are
ignored.
Everything is validated where it is read: one ConfigError line names the file, what it holds and
what was expected.
"""

from __future__ import annotations

import pathlib
import zipfile
from typing import NamedTuple

import numpy as np

from utilities.errors import ConfigError
from utilities.files import atomic_write

FLAG = "--embeddings"
FORMAT = (
    "an .npz archive (numpy.savez) with 'embeddings' (N×D), 'labels' (N), optional boolean "
    "'query' and 'gallery' masks and an optional 'uncertainty' (N×D')"
)


class EmbeddingArrays(NamedTuple):
    """The validated content of an embeddings file."""

    embeddings: np.ndarray  # float32 N×D
    labels: np.ndarray  # int64 (N,)
    query: np.ndarray | None  # bool (N,), with gallery
    gallery: np.ndarray | None
    uncertainty: np.ndarray | None  # float32 N×D' (IDML), or None when the file has none


def _fail(path: pathlib.Path, found: str) -> ConfigError:
    return ConfigError(f"{FLAG}: {path} {found}; expected {FORMAT}")


def _array(content: np.lib.npyio.NpzFile, key: str, path: pathlib.Path) -> np.ndarray:
    try:
        return np.asarray(content[key])
    except ValueError as error:  # object arrays with allow_pickle=False
        raise _fail(path, f"stores '{key}' as Python objects ({error})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise _fail(path, f"has an unreadable '{key}' ({error})") from None


def read_embeddings(path_text: str) -> EmbeddingArrays:
    """The arrays of an embeddings file, validated (see `EmbeddingArrays`)."""
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
        uncertainty = (
            _array(content, "uncertainty", path) if "uncertainty" in content.files else None
        )
    if embeddings.ndim != 2 or embeddings.shape[0] < 2 or embeddings.shape[1] < 1:
        raise _fail(path, f"has embeddings of shape {embeddings.shape} (at least 2×1 needed)")
    if not _is_real(embeddings):
        raise _fail(path, f"has embeddings of dtype {embeddings.dtype}, not real numbers")
    if not np.isfinite(embeddings).all():
        raise _fail(path, "has NaN or infinite embeddings")
    if uncertainty is not None:
        rows = embeddings.shape[0]
        if uncertainty.ndim != 2 or uncertainty.shape[0] != rows or uncertainty.shape[1] < 1:
            raise _fail(
                path, f"has 'uncertainty' of shape {uncertainty.shape} for {rows} embeddings"
            )
        if not _is_real(uncertainty):
            raise _fail(path, f"has 'uncertainty' of dtype {uncertainty.dtype}, not real numbers")
        if not np.isfinite(uncertainty).all():
            raise _fail(path, "has NaN or infinite 'uncertainty' values")
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
    return EmbeddingArrays(
        embeddings.astype(np.float32),
        labels.astype(np.int64),
        masks.get("query"),
        masks.get("gallery"),
        None if uncertainty is None else uncertainty.astype(np.float32),
    )


def _is_real(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)


def write_embeddings(path: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` (``embeddings``, ``labels``, optional masks and ``uncertainty``)
    atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    atomic_write(path, write)
