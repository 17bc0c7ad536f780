"""The standard training step (no defense)."""

from __future__ import annotations

import torch

from defenses import DEFENSES
from defenses.base import Terms, TrainingStep


@DEFENSES.register("none")
class StandardStep(TrainingStep):
    """Standard training (no defense): one train-mode forward pass, the loss on the batch's
    embeddings (its miner mining on them), one optimizer step:

        L = criterion(f(x), y)
    """

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> Terms:
        outputs = self.forward(images)
        loss = self.criterion(outputs["embeds"], labels, features=outputs["features"])
        self.update(loss)
        return {"loss": loss.detach()}
