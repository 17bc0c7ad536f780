"""Batch miners: which (anchor, positive, negative) triplets of a batch a loss is computed on.

``MINERS`` maps ``--batch_mining`` keys to :class:`batch_mining.base.BatchMiner` subclasses;
``build(opt)`` instantiates the selected one.
"""

from __future__ import annotations

import argparse

from registry import Registry, import_components

MINERS = Registry("batch miner", "--batch_mining")

import_components(__name__, __path__)
from batch_mining.base import BatchMiner


def build(opt: argparse.Namespace) -> BatchMiner:
    """The miner selected by ``--batch_mining``; ConfigError for an unknown key."""
    return MINERS.get(opt.batch_mining)(opt)
