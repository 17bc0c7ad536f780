"""The loss interface shared by every criterion.

A loss that needs mined tuples says so with ``requires_batchminer`` and names the miner result
kinds it consumes in ``miner_outputs`` (see ``batch_mining.base.BatchMiner.output``); its
``allowed_miners`` are then every registered miner of those kinds, so new miners become usable
without touching the losses. A loss that accepts only particular miners overrides
``allowed_miners`` with a plain tuple of keys.

A mining loss also accepts tuples mined elsewhere: the context entry ``mined=T`` in
``criterion(embeds, labels, mined=T)`` makes it skip its own miner and compute the loss on ``T``
(indices into ``embeds``, of the kind the loss consumes). A defense uses this to mine on benign
embeddings and apply the loss to adversarial ones.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

from batch_mining import MINERS
from batch_mining.base import BatchMiner


class AllowedMiners:
    """Class attribute: the keys of the registered miners whose ``output`` the loss consumes."""

    def __get__(self, instance: object, owner: type[Criterion]) -> tuple[str, ...]:
        if not owner.requires_batchminer:
            return ()
        return tuple(key for key, miner in MINERS.items() if miner.output in owner.miner_outputs)


class Criterion(nn.Module):
    """Base class: ``criterion(embeds B×D, labels B, **context) -> scalar loss``.

    ``context`` carries optional extras of the training step (``features``; ``mined``: tuples
    mined elsewhere, see :meth:`tuples`); losses ignore what they do not use.
    ``param_groups()`` lists the loss's own parameters for the optimizer.
    """

    requires_batchminer = False
    miner_outputs: tuple[str, ...] = ("triplets",)
    allowed_miners = AllowedMiners()
    registry_key: str

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__()
        del opt
        self.miner = miner

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        raise NotImplementedError

    def tuples(
        self, embeds: torch.Tensor, labels: torch.Tensor, mined: torch.Tensor | None
    ) -> torch.Tensor:
        """The tuples a mining loss is computed on: ``mined`` when given (indices into
        ``embeds``, mined elsewhere), else what the loss's own miner finds in ``embeds``."""
        if mined is not None:
            return mined.to(embeds.device)
        return self.miner(embeds, labels.to(embeds.device))

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups of the loss's own parameters (lr set, weight_decay 0)."""
        return []

    # An adversarial loss (DADA) also holds discriminators that minimise their own objective.
    # The training step gives them their own optimizer over ``discriminator_groups()`` and, per
    # batch, runs ``discriminator_steps`` updates of ``discriminator_loss`` on the detached
    # embeddings before the network's update on ``forward`` (the generator loss). For the first
    # ``generator_warmup_epochs`` epochs only the discriminators train.
    discriminator_steps = 0
    generator_warmup_epochs = 0

    def discriminator_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups of the discriminators (empty: the loss has none)."""
        return []

    def discriminator_loss(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The discriminators' loss on detached embeddings B×D (minimised over their
        parameters only)."""
        raise NotImplementedError


def zero_loss(embeds: torch.Tensor) -> torch.Tensor:
    """A zero loss that keeps the graph to the embeddings (nothing mined, nothing to learn)."""
    return embeds.sum() * 0


def distances(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Row-wise Euclidean distance sqrt(‖x−y‖² + eps): finite gradient where x = y."""
    return ((x - y).pow(2).sum(1) + eps).sqrt()
