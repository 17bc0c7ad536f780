"""Device selection: CUDA when present, CPU otherwise, through one code path."""

from __future__ import annotations

import argparse

import torch

from utilities.errors import ConfigError


def select_device(opt: argparse.Namespace) -> torch.device:
    """Resolve ``--device`` (auto, cpu, cuda, cuda:N); ``auto``: ``--gpu[0]`` when CUDA exists."""
    requested = opt.device
    if requested == "auto":
        if torch.cuda.is_available():
            index = opt.gpu[0] if opt.gpu else 0
            return torch.device(f"cuda:{min(index, torch.cuda.device_count() - 1)}")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise ConfigError(
            f"--device: {requested!r} is not a device; expected auto, cpu, cuda or cuda:N"
        ) from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device: {requested} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device: {requested} requested but only {torch.cuda.device_count()} GPU(s) exist"
            )
    elif device.type != "cpu":
        raise ConfigError(f"--device: {requested!r} is not supported; expected cpu or cuda[:N]")
    return device
