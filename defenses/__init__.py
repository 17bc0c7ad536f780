"""Training steps: how one batch becomes an update, selected with ``--defense``.

``DEFENSES`` maps ``--defense`` keys to :class:`defenses.base.TrainingStep` subclasses: ``none``
(the standard step), ``est``, ``act`` and ``hm`` (robrank's adversarial-training defenses). A
step owns the whole update of a batch (forward passes, loss terms, backward through
``Precision``, the optimizer step) and returns the named scalar terms the loop logs; ``main.py``
calls it once per batch and knows nothing of any defense. ``--defense`` also takes robrank's
model-name grammar (``ghmetsmi``, see :mod:`defenses.grammar`), resolved into the ``hm`` flags by
:func:`defenses.grammar.resolve_defense` before validation.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from registry import Registry, import_components

DEFENSES = Registry("defense", "--defense")

import_components(__name__, __path__)
from criteria.base import Criterion
from defenses.base import TrainingStep
from utilities.precision import Precision


def validate(opt: argparse.Namespace) -> None:
    """Fail at start-up: an unknown defense, out-of-range ``--defense_*`` values, or a loss the
    defense cannot serve (the message names both and the losses it can serve)."""
    DEFENSES.get(opt.defense).check_options(opt)


def build(
    opt: argparse.Namespace,
    model: nn.Module,
    criterion: Criterion,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
) -> TrainingStep:
    """The ``--defense`` training step over the model, the loss and its optimizer."""
    return DEFENSES.get(opt.defense)(opt, model, criterion, optimizer, precision)
