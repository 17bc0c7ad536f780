"""The standard training step (no defense)."""

from __future__ import annotations

import argparse

import torch

from defenses import DEFENSES, mixup
from defenses.base import Terms, TrainingStep


@DEFENSES.register("none")
class StandardStep(TrainingStep):
    """Standard training (no defense): one train-mode forward pass, the loss on the batch's
    embeddings (its miner mining on them), one optimizer step:

        L = criterion(f(x), y)

    With ``--input_mixup`` (IDML's recipe, :mod:`defenses.mixup`) a second forward pass on the
    mixed batch x_mix = λx + (1 − λ)x[π] adds its terms, one backward through both:

        L = criterion(f(x), y) + λ·criterion(f(x_mix), y) + (1 − λ)·criterion(f(x_mix), y[π])

    and ``loss_mixup`` reports the last two. With an adversarial loss (DADA), its
    discriminators first take their steps on the detached embeddings of the clean forward pass
    (``loss_discriminator``); in the loss's generator warm-up only they train and ``loss`` is
    not reported.
    """

    def __init__(self, opt: argparse.Namespace, *args: object) -> None:
        super().__init__(opt, *args)  # type: ignore[arg-type]
        self.input_mixup = bool(opt.input_mixup)

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        mixup.add_arguments(group)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> Terms:
        with torch.set_grad_enabled(self.generator_active):
            outputs = self.forward(images)
        terms = self.train_discriminators(outputs["embeds"], labels)
        if not self.generator_active:
            return terms
        loss = self.criterion(outputs["embeds"], labels, **self.loss_context(outputs))
        if self.input_mixup:
            loss_mixup = self.mixup_loss(images, labels)
            loss = loss + loss_mixup
            terms["loss_mixup"] = loss_mixup.detach()
        self.update(loss)
        self.passes = 2 if self.input_mixup else 1
        return {"loss": loss.detach(), **terms}

    def mixup_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """λ·L(f(x_mix), y) + (1 − λ)·L(f(x_mix), y[π]) on a freshly mixed batch."""
        batch = mixup.mix(images)
        outputs = self.forward(batch.images)
        context = self.loss_context(outputs)
        return mixup.mixup_loss(
            lambda targets: self.criterion(outputs["embeds"], targets, **context), labels, batch
        )
