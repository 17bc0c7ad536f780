"""Losses: ``CRITERIA`` maps ``--loss`` keys to :class:`criteria.base.Criterion` subclasses.

``build(opt)`` builds the loss together with the batch miner it needs and checks that the pair is
compatible (by the miner's registry key and result kind).
"""

from __future__ import annotations

import argparse

import batch_mining
from registry import Registry, import_components
from utilities.errors import ConfigError

CRITERIA = Registry("loss", "--loss")

import_components(__name__, __path__)
from criteria import introspective
from criteria.base import Criterion


def check_miner(opt: argparse.Namespace) -> None:
    """ConfigError when ``--loss`` needs a miner and ``--batch_mining`` is not one it allows."""
    loss_class = CRITERIA.get(opt.loss)
    if not loss_class.requires_batchminer:
        return
    miner_key = batch_mining.MINERS.get(opt.batch_mining).registry_key
    allowed = loss_class.allowed_miners
    if miner_key not in allowed:
        raise ConfigError(
            f"--batch_mining: miner {miner_key!r} cannot be used with --loss {opt.loss}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def add_introspection_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of IDML's introspective similarity (:mod:`criteria.introspective`)."""
    group = parser.add_argument_group("introspective similarity (--idml)")
    introspective.add_arguments(group)


def check_introspection(opt: argparse.Namespace) -> None:
    """ConfigError when ``--idml`` is given with a loss that has no introspective form."""
    introspective.check_options(opt)


def build(opt: argparse.Namespace) -> Criterion:
    """The loss selected by ``--loss``, with its ``--batch_mining`` miner when it needs one."""
    check_miner(opt)
    loss_class = CRITERIA.get(opt.loss)
    miner = batch_mining.build(opt) if loss_class.requires_batchminer else None
    return loss_class(opt, miner)
