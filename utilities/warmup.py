"""Which parameters train in an epoch: the warm-up of the Proxy-Anchor / IDML / DADA recipes and
the BatchNorm affine freezing (methods.md §A.4, §A.8, §B.1 item 9).

``--warmup_epochs N`` (PA/IDML ``--warm``, DADA ``warmup``): for the first N epochs only the
embedding head (``model.last_linear``) and the loss's own parameters (proxies, β, discriminators)
train; every other network parameter, the IDML uncertainty head included, has
``requires_grad = False``. The learning-rate schedules step through the warm-up unless
``--scheduler_after_warmup``.

``--freeze_bn_affine``: the BatchNorm weight and bias never train (the running statistics are
the architecture's ``_frozen`` suffix, a separate setting). ``--warmup_unfreezes_bn_affine``
reproduces the references' ``--bn-freeze 1`` with ``--warm N``: the affine parameters are frozen
at construction, and the end of the warm-up makes every parameter trainable again, them included.
"""

from __future__ import annotations

import argparse

from torch import nn

from architectures.base import BATCH_NORMS
from utilities.errors import ConfigError
from utilities.flag_types import nonnegative_int


class Warmup:
    """Sets ``requires_grad`` of the network's parameters for an epoch (1-based)."""

    def __init__(self, opt: argparse.Namespace, model: nn.Module, criterion: nn.Module) -> None:
        self.epochs = opt.warmup_epochs
        self.freeze_bn_affine = opt.freeze_bn_affine
        self.unfreeze_bn_after_warmup = opt.warmup_unfreezes_bn_affine
        self.model = model
        head = getattr(model, "last_linear", None)
        self.head_ids = {id(p) for p in head.parameters()} if head is not None else set()
        self.loss_ids = {id(p) for p in criterion.parameters()}
        self.bn_affine_ids = {
            id(p)
            for module in model.modules()
            if isinstance(module, BATCH_NORMS)
            for p in module.parameters(recurse=False)
        }

    def in_warmup(self, epoch: int) -> bool:
        return epoch <= self.epochs

    def apply(self, epoch: int) -> None:
        """Only the head (and the loss's parameters, which stay trainable) in a warm-up epoch;
        BatchNorm affine frozen as configured."""
        warm = self.in_warmup(epoch)
        bn_frozen = self.freeze_bn_affine and not (self.unfreeze_bn_after_warmup and not warm)
        for param in self.model.parameters():
            if id(param) in self.loss_ids:
                continue
            trainable = id(param) in self.head_ids or not warm
            if id(param) in self.bn_affine_ids and bn_frozen:
                trainable = False
            param.requires_grad_(trainable)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--warmup_epochs",
        "--warm",
        dest="warmup_epochs",
        type=nonnegative_int,
        default=0,
        help="epochs at the start in which only the embedding head and the loss's parameters "
        "train (PA/IDML --warm, DADA warmup)",
    )
    group.add_argument(
        "--freeze_bn_affine",
        action="store_true",
        help="BatchNorm weight and bias never train (running statistics: the _frozen suffix)",
    )
    group.add_argument(
        "--warmup_unfreezes_bn_affine",
        action="store_true",
        help="with --freeze_bn_affine and --warmup_epochs: the affine parameters train again "
        "after the warm-up (reproduces the PA/IDML --bn-freeze 1 reference)",
    )


def check_options(opt: argparse.Namespace) -> None:
    if opt.warmup_unfreezes_bn_affine and not (opt.freeze_bn_affine and opt.warmup_epochs > 0):
        raise ConfigError(
            "--warmup_unfreezes_bn_affine: needs --freeze_bn_affine and --warmup_epochs > 0 "
            f"(found --freeze_bn_affine {opt.freeze_bn_affine}, --warmup_epochs "
            f"{opt.warmup_epochs}); it re-enables the frozen affine parameters after the warm-up"
        )
