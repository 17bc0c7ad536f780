"""W&B runs for ``aggregate.py``: through the public API (``--wandb ENTITY/PROJECT``) or read
from the offline run files ``wandb`` writes (``--wandb_offline FOLDER``), both as ``WandbRun``."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import struct
import zlib
from collections.abc import Iterable
from typing import Any

from utilities.errors import ConfigError
from utilities.online_logging import api_key_configured

API_TIMEOUT = 30  # seconds per W&B API request
_HEADER = b":W&B\xe1\xbe\x00"  # ident, magic 0xBEE1 (little endian), version 0
_BLOCK = 32768  # the transaction log's block size (LevelDB log format)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class WandbUnavailableError(Exception):
    """The W&B path cannot run; the message says why (package, key, network, project)."""


@dataclasses.dataclass
class WandbRun:
    """One W&B run: its name, id, config (our options) and history rows (``_step`` = epoch,
    keys ``"<Split>: <metric>"``), and whether it finished (exit code 0)."""

    name: str
    run_id: str
    config: dict[str, Any]
    rows: Iterable[dict[str, Any]]
    finished: bool
    source: str


def api_runs(path: str) -> list[WandbRun]:
    """Every run of ``ENTITY/PROJECT`` with its full history (``scan_history``, every row; the
    sampled ``history`` would drop epochs). WandbUnavailableError says why this cannot run."""
    try:
        import wandb
    except ImportError:
        raise WandbUnavailableError(
            "the wandb package is not installed (pip install wandb)"
        ) from None
    if not api_key_configured():
        raise WandbUnavailableError("no W&B API key (set WANDB_API_KEY or run `wandb login`)")
    try:
        api = wandb.Api(timeout=API_TIMEOUT)
        runs = list(api.runs(path))
    except Exception as error:  # network, authentication, unknown project: all end the same way
        reason = " ".join(str(error).split())[:200]
        raise WandbUnavailableError(
            f"cannot read {path} ({type(error).__name__}: {reason})"
        ) from None
    return [
        WandbRun(
            name=run.name,
            run_id=run.id,
            config={k: v for k, v in dict(run.config).items() if not k.startswith("_")},
            rows=run.scan_history(),
            finished=run.state == "finished",
            source=f"wandb:{path}/{run.id}",
        )
        for run in runs
    ]


def offline_run_files(folder: str | os.PathLike) -> list[pathlib.Path]:
    """The ``run-<id>.wandb`` files below ``folder`` (in ``offline-run-*/`` and ``run-*/``)."""
    return sorted(pathlib.Path(folder).rglob("run-*.wandb"))


def read_offline_run(path: str | os.PathLike) -> WandbRun:
    """A run from its transaction log, the file ``wandb sync`` uploads: LevelDB-log records
    (7-byte header: CRC-32 of type byte + data, length, type) in 32 KiB blocks, each a
    ``wandb_internal_pb2.Record``. ConfigError names the file when it is not such a log."""
    from wandb.proto import wandb_internal_pb2

    path = pathlib.Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"--wandb_offline: cannot read {path}: {error.strerror}") from None
    if not data.startswith(_HEADER):
        raise ConfigError(f"--wandb_offline: {path} is not a W&B run file (no :W&B header)")
    run_id, name, config, rows, finished = path.stem.removeprefix("run-"), "", {}, [], False
    for payload in _log_records(data, path):
        record = wandb_internal_pb2.Record()
        try:
            record.ParseFromString(payload)
        except Exception:  # protobuf's DecodeError
            raise ConfigError(f"--wandb_offline: {path} holds an unreadable record") from None
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_id, name = record.run.run_id or run_id, record.run.display_name
            config.update(_items(record.run.config.update))
        elif kind == "config":
            config.update(_items(record.config.update))
        elif kind == "history":
            rows.append(_items(record.history.item))
        elif kind == "exit":
            finished = record.exit.exit_code == 0
    config = {key: value for key, value in config.items() if not key.startswith("_")}
    return WandbRun(name or run_id, run_id, config, rows, finished, str(path))


def _items(items: Iterable[Any]) -> dict[str, Any]:
    """``{key: value}`` of config/history items (``key``, or ``nested_key`` joined by ``/``)."""
    return {
        (item.key or "/".join(item.nested_key)): json.loads(item.value_json or "null")
        for item in items
    }


def _log_records(data: bytes, path: pathlib.Path) -> Iterable[bytes]:
    position, pending = len(_HEADER), b""
    while position + 7 <= len(data):
        left = _BLOCK - position % _BLOCK
        if left < 7:  # a block's trailer too short for a header is padding
            position += left
            continue
        checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0 and length == 0:  # zero padding at the end of a block
            position += left
            continue
        chunk = data[position + 7 : position + 7 + length]
        if len(chunk) < length:  # a run still being written: what is complete so far
            return
        if zlib.crc32(bytes([kind]) + chunk) != checksum:
            raise ConfigError(f"--wandb_offline: {path} is corrupt at byte {position}")
        position += 7 + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""
