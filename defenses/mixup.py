"""Input mixup of the IDML training recipe (methods.md §A.4), switched on with ``--input_mixup``
(no component is registered here: the flag, the draw and the loss terms the standard step adds).

IDML's ``train.py`` (Wang et al., "Introspective Deep Metric Learning", TPAMI 2023; not in its
README) mixes every batch with a shuffled copy of itself and trains on both:

    λ ~ Beta(1, 1) (one scalar per batch),  π a random permutation of the batch
    x_mix = λ·x + (1 − λ)·x[π]
    L = L(f(x), y) + λ·L(f(x_mix), y) + (1 − λ)·L(f(x_mix), y[π])

two forward passes, one backward. λ and π come from the torch generator of the images' device,
so a global seed makes them reproducible. Only the standard step (``--defense none``) trains it;
the adversarial defenses reject the flag at start-up.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import torch

from utilities.errors import ConfigError

BETA_CONCENTRATION = 1.0  # IDML's Beta(1, 1)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """The ``--input_mixup`` switch (read by the standard step)."""
    group.add_argument(
        "--input_mixup",
        action="store_true",
        help="none: IDML's input mixup, L(f(x), y) + λ·L(f(x_mix), y) + (1 − λ)·L(f(x_mix), "
        "y[π]) with x_mix = λx + (1 − λ)x[π], λ ~ Beta(1,1) per batch (two forward passes)",
    )


def check_unsupported(opt: argparse.Namespace, defense: str) -> None:
    """ConfigError when ``--input_mixup`` is given to a step that does not train it."""
    if getattr(opt, "input_mixup", False):
        raise ConfigError(
            f"--input_mixup: only --defense none trains the input mixup, got --defense {defense}"
        )


@dataclass
class MixedBatch:
    """A mixed batch: ``images`` = λ·x + (1 − λ)·x[π]; ``weight`` λ (0-d, on the images'
    device), ``permutation`` π (B,)."""

    images: torch.Tensor
    weight: torch.Tensor
    permutation: torch.Tensor


def mix(images: torch.Tensor) -> MixedBatch:
    """Draw λ ~ Beta(1, 1) and π (the global torch generator of the images' device) and mix
    ``images`` (B×C×H×W) with their permuted copy."""
    concentration = torch.tensor(BETA_CONCENTRATION, device=images.device)
    weight = torch.distributions.Beta(concentration, concentration).sample()
    permutation = torch.randperm(len(images), device=images.device)
    mixed = weight * images + (1 - weight) * images[permutation]
    return MixedBatch(mixed.to(images.dtype), weight.to(images.dtype), permutation)


def mixup_loss(
    loss: Callable[[torch.Tensor], torch.Tensor], labels: torch.Tensor, batch: MixedBatch
) -> torch.Tensor:
    """λ·L(f(x_mix), y) + (1 − λ)·L(f(x_mix), y[π]); ``loss(labels)`` is the criterion on the
    mixed batch's outputs with those labels."""
    permuted = labels[batch.permutation.to(labels.device)]
    weight = batch.weight.float()
    return weight * loss(labels) + (1 - weight) * loss(permuted)
