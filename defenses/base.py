"""The training-step contract every ``--defense`` follows.

A step is called once per batch, ``step(images, labels) -> {name: 0-d tensor}``, and does the
whole update: its forward passes, its loss terms, the backward pass through ``Precision`` and the
optimizer step. The returned terms (always ``loss``, plus e.g. ``loss_benign``,
``loss_adversarial``, ``pgd_iterations``) are averaged per epoch by ``main.py`` into the CSV logs,
the curves and W&B. ``passes`` is the number of forward/backward passes the last step cost
(1 for the standard step, PGD iterations + 1 for a defense), shown by the progress bar. State a
step carries across batches (the gradual adversary's previous loss) goes through
``state_dict``/``load_state_dict`` into ``checkpoint_last.pth``.
"""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

import torch
from torch import nn

from criteria.base import Criterion
from utilities.precision import Precision

Terms = dict[str, torch.Tensor]


class NonFiniteLossError(Exception):
    """The loss of a step is NaN or infinite; nothing was updated."""

    def __init__(self, value: float) -> None:
        super().__init__(f"non-finite loss ({value})")
        self.value = value


class TrainingStep:
    """Base class of the registered training steps (``@DEFENSES.register("key")``).

    ``model`` maps B×C×H×W images in [0,1] to ``{"embeds", "features"}``; ``criterion`` is the
    ``--loss``; ``optimizer`` holds the network's and the loss's parameters.
    """

    registry_key: ClassVar[str]

    def __init__(
        self,
        opt: argparse.Namespace,
        model: nn.Module,
        criterion: Criterion,
        optimizer: torch.optim.Optimizer,
        precision: Precision,
    ) -> None:
        self.model = model
        self.criterion = criterion
        self.optimizer = optimizer
        self.precision = precision
        self.passes = 1

    @classmethod
    def check_options(cls, opt: argparse.Namespace) -> None:
        """Raise ConfigError, before any work, for flags or a loss this step cannot use."""

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> Terms:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's outputs in its current mode, embeddings as float32."""
        with self.precision.autocast():
            outputs = self.model(images)
        return {name: value.float() for name, value in outputs.items()}

    def update(self, loss: torch.Tensor) -> None:
        """One optimizer step on ``loss``: zero the gradients, backward (scaled under AMP),
        step. A non-finite loss raises :class:`NonFiniteLossError` before anything changes."""
        if not torch.isfinite(loss):
            raise NonFiniteLossError(loss.item())
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward_and_step(loss, self.optimizer)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state
