"""Optimizer and learning-rate schedules from the flags.

The network's optimizer (``--optim`` adam, adamw or sgd) holds every network parameter, the
frozen ones included (an optimizer skips a parameter without a gradient, and the warm-up makes
parameters trainable again later), and the loss's own parameter groups. A step may hold more
optimizers (an adversarial loss's discriminators); :class:`Schedules` gives each the same
``--scheduler`` and steps them together once per epoch.
"""

from __future__ import annotations

import argparse
import re
import warnings
from typing import Any

import torch
from torch import nn


def build_optimizer(
    opt: argparse.Namespace, model: nn.Module, criterion: nn.Module
) -> torch.optim.Optimizer:
    """Network parameters at ``--lr`` with ``--decay`` (the head at ``--fc_lr`` when >= 0), plus
    the criterion's own parameter groups (their learning rate and weight decay, 0 unless the
    loss's reference decayed them)."""
    head_ids = {id(p) for p in model.last_linear.parameters()} if opt.fc_lr >= 0 else set()
    body = [p for p in model.parameters() if id(p) not in head_ids]
    groups = [{"params": body, "lr": opt.lr, "weight_decay": opt.decay}]
    if head_ids:
        head = list(model.last_linear.parameters())
        groups.append({"params": head, "lr": opt.fc_lr, "weight_decay": opt.decay})
    groups.extend(criterion.param_groups())
    if opt.optim == "adam":
        return torch.optim.Adam(groups)
    if opt.optim == "adamw":
        return torch.optim.AdamW(groups)
    return torch.optim.SGD(groups, momentum=0.9)


def build_schedule(
    opt: argparse.Namespace, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    """The ``--scheduler`` of one optimizer, in epochs:

    - ``step``/``multistep``: lr · γ^(number of milestones ``--tau`` passed), γ = ``--gamma``;
    - ``steplr``: lr · γ^⌊epoch / ``--lr_decay_step``⌋;
    - ``linear``: lr · (s + (e − s) · min(epoch, L) / L), s/e/L = ``--lr_linear_start``/
      ``_end``/``_length``;
    - ``none``: lr.
    """
    schedules = torch.optim.lr_scheduler
    if opt.scheduler in ("step", "multistep"):
        return schedules.MultiStepLR(optimizer, milestones=opt.tau, gamma=opt.gamma)
    if opt.scheduler == "steplr":
        return schedules.StepLR(optimizer, step_size=opt.lr_decay_step, gamma=opt.gamma)
    if opt.scheduler == "linear":
        return schedules.LinearLR(
            optimizer,
            start_factor=opt.lr_linear_start,
            end_factor=opt.lr_linear_end,
            total_iters=opt.lr_linear_length,
        )
    return schedules.MultiStepLR(optimizer, milestones=[], gamma=1.0)


SCHEDULE_ORDER_WARNING = "Detected call of `lr_scheduler.step()` before `optimizer.step()`"


class Schedules:
    """One ``--scheduler`` per optimizer, stepped together after each epoch. With
    ``--scheduler_after_warmup`` the epochs of the warm-up (``--warmup_epochs`` and the loss's
    generator warm-up) do not count: stepping starts after them, as DADA's main loop."""

    def __init__(
        self,
        opt: argparse.Namespace,
        optimizers: list[torch.optim.Optimizer],
        warmup_epochs: int = 0,
    ) -> None:
        self.schedules = [build_schedule(opt, optimizer) for optimizer in optimizers]
        self.hold_epochs = warmup_epochs if opt.scheduler_after_warmup else 0

    def step(self, epoch: int) -> None:
        """After epoch ``epoch`` (1-based)."""
        if epoch > self.hold_epochs:
            with warnings.catch_warnings():
                # An optimizer that did not step this epoch (an adversarial loss's generator
                # warm-up) still follows the epoch count; torch warns about that order.
                warnings.filterwarnings("ignore", re.escape(SCHEDULE_ORDER_WARNING))
                for schedule in self.schedules:
                    schedule.step()

    def state_dict(self) -> dict[str, Any]:
        return {"schedules": [schedule.state_dict() for schedule in self.schedules]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("schedules", [state])  # a single state: a checkpoint of one schedule
        if len(saved) != len(self.schedules):
            raise ValueError(f"{len(saved)} schedules saved, {len(self.schedules)} expected")
        for schedule, entry in zip(self.schedules, saved, strict=True):
            schedule.load_state_dict(entry)
