"""How a batch becomes a loss.

The loop in ``main.py`` only calls a step object. The standard step embeds the batch and applies
the criterion. Adversarial-training defenses (PGD on the model, then the criterion), IDML's second
head and DADA's discriminators replace or wrap this step; multi-GPU training passes a ``gather``
that collects embeddings and labels across ranks before mining. Extra state (e.g. discriminator
optimizers) goes through ``state_dict``/``load_state_dict`` into the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from utilities.precision import Precision

Gather = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def no_gather(embeds: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return embeds, labels


class StandardStep:
    """Embed the images, gather across ranks (identity on one process), apply the criterion."""

    def __init__(
        self,
        model: nn.Module,
        criterion: nn.Module,
        precision: Precision,
        gather: Gather = no_gather,
    ) -> None:
        self.model = model
        self.criterion = criterion
        self.precision = precision
        self.gather = gather

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            outputs = self.model(images)
        embeds, labels = self.gather(outputs["embeds"].float(), labels)
        return self.criterion(embeds, labels, features=outputs["features"])

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state
