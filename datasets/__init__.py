"""Datasets: on-disk layouts read into split records, wrapped as torch datasets.

``DATASETS`` maps ``--dataset`` keys to :class:`datasets.base.DatasetSource` subclasses;
``build(opt, input_spec)`` loads the selected one and applies the transforms of
``--augmentation`` at the architecture's input size and channel count.
"""

from __future__ import annotations

import argparse
from typing import Any

from architectures.input_spec import InputSpec
from registry import Registry, import_components

DATASETS = Registry("dataset", "--dataset")

import_components(__name__, __path__)
from datasets.base import DataSplits, ImageDataset, check_tv_split_perc
from datasets.transforms import eval_transform, train_transform


def dataset_defaults(key: str) -> dict[str, Any]:
    """Dataset defaults for flags the user did not give; ConfigError for an unknown key."""
    return dict(DATASETS.get(key).defaults)


def build(opt: argparse.Namespace, input_spec: InputSpec) -> DataSplits:
    """Torch datasets of ``--dataset``: train (train augmentation), evaluation (train images,
    evaluation transform), test and, with ``--use_tv_split``, val."""
    source = DATASETS.get(opt.dataset)()
    train_tf = train_transform(opt.augmentation, input_spec)
    eval_tf = eval_transform(opt.augmentation, input_spec)
    if getattr(opt, "use_tv_split", False):
        check_tv_split_perc(opt.tv_split_perc)
    splits = source.load(opt)
    val = splits.get("val")
    return DataSplits(
        train=ImageDataset(splits["train"], train_tf),
        evaluation=ImageDataset(splits["train"], eval_tf),
        test=ImageDataset(splits["test"], eval_tf),
        val=None if val is None else ImageDataset(val, eval_tf),
    )
