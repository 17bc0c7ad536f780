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
from utilities.warmup import Warmup

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
        self.clip_value = opt.grad_clip_value
        self.warmup = Warmup(opt, model, criterion)
        groups = criterion.discriminator_groups()
        self.discriminator_optimizer = torch.optim.Adam(groups) if groups else None
        self.generator_active = True

    @classmethod
    def check_options(cls, opt: argparse.Namespace) -> None:
        """Raise ConfigError, before any work, for flags or a loss this step cannot use."""

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> Terms:
        raise NotImplementedError

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Every optimizer of the step (the network's first); the schedules run over all."""
        extra = [self.discriminator_optimizer] if self.discriminator_optimizer else []
        return [self.optimizer, *extra]

    def begin_epoch(self, epoch: int) -> None:
        """Called by the loop before epoch ``epoch`` (1-based): the warm-up's trainable set and,
        for an adversarial loss, whether the network (the generator) trains this epoch."""
        self.warmup.apply(epoch)
        self.generator_active = epoch > self.criterion.generator_warmup_epochs

    @staticmethod
    def loss_context(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The model outputs a criterion reads besides the embeddings (``features``, and
        ``uncertainty`` with ``--idml``)."""
        return {name: outputs[name] for name in ("features", "uncertainty") if name in outputs}

    def train_discriminators(self, embeds: torch.Tensor, labels: torch.Tensor) -> Terms:
        """An adversarial loss's discriminator updates on the detached embeddings, before the
        network's update: ``criterion.discriminator_steps`` steps of its own optimizer, each on a
        fresh ``criterion.discriminator_loss``. Returns ``loss_discriminator`` (their mean), or
        nothing for a loss without discriminators."""
        if self.discriminator_optimizer is None:
            return {}
        embeds = embeds.detach()
        losses = []
        for _ in range(self.criterion.discriminator_steps):
            loss = self.criterion.discriminator_loss(embeds, labels)
            self.optimizer_step(loss, self.discriminator_optimizer)
            losses.append(loss.detach())
        return {"loss_discriminator": torch.stack(losses).mean()}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's outputs in its current mode, embeddings as float32."""
        with self.precision.autocast():
            outputs = self.model(images)
        return {name: value.float() for name, value in outputs.items()}

    def update(self, loss: torch.Tensor) -> None:
        """One optimizer step on ``loss``: zero the gradients, backward (scaled under AMP), clip
        the gradient values at ``--grad_clip_value`` when set, step. A non-finite loss raises
        :class:`NonFiniteLossError` before anything changes."""
        self.optimizer_step(loss, self.optimizer, self.clip_value)

    def optimizer_step(
        self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, clip_value: float = 0.0
    ) -> None:
        """Non-finite check, zero_grad, backward through ``Precision`` (clipping at
        ``clip_value`` > 0), step of ``optimizer``."""
        if not torch.isfinite(loss):
            raise NonFiniteLossError(loss.item())
        optimizer.zero_grad(set_to_none=True)
        self.precision.backward_and_step(loss, optimizer, clip_value)

    def state_dict(self) -> dict[str, Any]:
        """State carried across batches; a subclass adds its own to this."""
        if self.discriminator_optimizer is None:
            return {}
        return {"discriminator_optimizer": self.discriminator_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.discriminator_optimizer is not None:
            self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
