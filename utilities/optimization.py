"""Optimizer and learning-rate schedule from the flags (reference: Adam or SGD, MultiStepLR)."""

from __future__ import annotations

import argparse

import torch
from torch import nn


def build_optimizer(
    opt: argparse.Namespace, model: nn.Module, criterion: nn.Module
) -> torch.optim.Optimizer:
    """Network parameters at ``--lr`` with ``--decay`` (the head at ``--fc_lr`` when >= 0), plus
    the criterion's own parameter groups (their learning rate and weight decay, 0 unless the
    loss's reference decayed them)."""
    head_ids = {id(p) for p in model.last_linear.parameters()} if opt.fc_lr >= 0 else set()
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": body, "lr": opt.lr, "weight_decay": opt.decay}]
    if head_ids:
        head = [p for p in model.last_linear.parameters() if p.requires_grad]
        groups.append({"params": head, "lr": opt.fc_lr, "weight_decay": opt.decay})
    groups.extend(criterion.param_groups())
    if opt.optim == "adam":
        return torch.optim.Adam(groups)
    return torch.optim.SGD(groups, momentum=0.9)


def build_scheduler(
    opt: argparse.Namespace, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.MultiStepLR:
    """MultiStepLR at ``--tau`` by ``--gamma``; ``--scheduler none`` keeps the rate constant."""
    milestones = [] if opt.scheduler == "none" else opt.tau
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=opt.gamma)
