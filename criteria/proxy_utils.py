"""Helpers shared by the proxy and classification losses (no component registered here)."""

from __future__ import annotations

import argparse
import math

import torch

from utilities.errors import ConfigError


def require_classes(opt: argparse.Namespace, minimum: int, loss: str) -> None:
    """ConfigError unless the training set has at least ``minimum`` classes (``opt.n_classes``)."""
    n_classes = getattr(opt, "n_classes", None)
    if n_classes is None or n_classes < minimum:
        raise ConfigError(
            f"--loss {loss}: needs at least {minimum} training classes, found {n_classes}"
        )


def uniform_class_matrix(n_classes: int, dim: int) -> torch.Tensor:
    """A C×D class matrix drawn uniformly from ±1/√D (as the reference's softmax and arcface)."""
    bound = 1 / math.sqrt(dim)
    return torch.empty(n_classes, dim).uniform_(-bound, bound)
