"""The handwritten digits bundled with scikit-learn (UCI optical recognition of handwritten
digits; Alpaydin & Kaynak, 1998): 1,797 8×8 images, upsampled to 28×28."""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from datasets import DATASETS
from datasets.base import DatasetSource, SplitRecords
from datasets.mnist import zero_shot

SIDE = 28


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """uint8 N×28×28 images (bilinear upsampling of values 0–16 scaled to 0–255), int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) * (255.0 / 16.0)
    large = F.interpolate(small, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    images = large.squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()
    return images, np.asarray(digits.target, dtype=np.int64)


@DATASETS.register("digits")
class Digits(DatasetSource):
    """scikit-learn's digits: a seconds-fast dataset for smoke tests and examples.

    Default split by samples, deterministic (independent of ``--seed``): within each class every
    third sample (positions 2, 5, 8, ...) is test, the rest train, so all ten classes appear in
    both (1,201 train / 596 test). ``--split_by_classes``: classes 0–4 train, 5–9 test.
    """

    title = "digits"
    folder = ""
    layout = "bundled with scikit-learn (no files needed)"
    defaults: ClassVar[dict[str, Any]] = {
        "arch": "c2f2_normalize",
        "lr": 1e-3,
        "augmentation": "none",
        "n_epochs": 12,
        "decay": 1e-7,
    }

    def read(self, opt: argparse.Namespace) -> dict[str, SplitRecords]:
        images, labels = digit_images()
        if getattr(opt, "split_by_classes", False):
            return zero_shot(images, labels)
        position = np.zeros(len(labels), dtype=np.int64)
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            position[members] = np.arange(len(members))
        test = position % 3 == 2
        return {
            "train": SplitRecords(images[~test], labels[~test]),
            "test": SplitRecords(images[test], labels[test]),
        }
