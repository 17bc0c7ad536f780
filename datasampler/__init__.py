"""Batch samplers: which dataset indices form each training batch.

``SAMPLERS`` maps ``--data_sampler`` keys to :class:`datasampler.base.BatchSampler` subclasses;
``build(opt, labels)`` instantiates the selected one for the training labels.
"""

from __future__ import annotations

import argparse

import numpy as np

from registry import Registry, import_components

SAMPLERS = Registry("batch sampler", "--data_sampler")

import_components(__name__, __path__)
from datasampler.base import BatchSampler


def build(opt: argparse.Namespace, labels: np.ndarray) -> BatchSampler:
    """The sampler selected by ``--data_sampler`` over the training ``labels``."""
    return SAMPLERS.get(opt.data_sampler)(opt, labels)
