"""MNIST (LeCun et al., "Gradient-Based Learning Applied to Document Recognition", 1998), read
from the standard IDX files; the DML protocol of RobRank (robustness.md §5.5)."""

from __future__ import annotations

import argparse
import gzip
import pathlib
from typing import Any, ClassVar

import numpy as np

from datasets import DATASETS
from datasets.base import DatasetSource, SplitRecords
from utilities.errors import DataError

CLASSES = 10
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: pathlib.Path, ndim: int) -> np.ndarray:
    """A uint8 IDX array (magic 0x0000 08 <ndim>, big-endian int32 sizes, then the data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: unreadable IDX file ({error})") from None
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes([0, 0, 8, ndim]):
        raise DataError(
            f"{path}: not a uint8 IDX file with {ndim} dimensions (magic {data[:4].hex()}, "
            f"expected 0000080{ndim})"
        )
    shape = tuple(int(n) for n in np.frombuffer(data[4:header], dtype=">i4"))
    if len(data) - header != int(np.prod(shape)):
        raise DataError(
            f"{path}: header says shape {shape} ({int(np.prod(shape))} bytes), found "
            f"{len(data) - header} bytes of data"
        )
    return np.frombuffer(data[header:], dtype=np.uint8).reshape(shape)


def zero_shot(images: np.ndarray, labels: np.ndarray) -> dict[str, SplitRecords]:
    """Classes 0–4 train, 5–9 test (labels kept)."""
    train = labels < 5
    return {
        "train": SplitRecords(images[train], labels[train]),
        "test": SplitRecords(images[~train], labels[~train]),
    }


@DATASETS.register("mnist")
class Mnist(DatasetSource):
    """MNIST: train = the 60,000 training images, test = the 10,000 test images (10 classes,
    1×28×28, ToTensor only). ``--split_by_classes``: classes 0–4 train, 5–9 test over all 70,000.
    Never downloaded.
    """

    title = "MNIST"
    folder = "mnist"
    torchvision_folder = "MNIST"
    layout = (
        "<source_path>/mnist/ or <source_path>/MNIST/raw/ holding train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (plain or .gz)"
    )
    defaults: ClassVar[dict[str, Any]] = {
        "arch": "c2f2_normalize",
        "lr": 1e-3,
        "augmentation": "none",
        "n_epochs": 8,
        "decay": 1e-7,
    }

    def find(self, folder: pathlib.Path, name: str) -> pathlib.Path | None:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
        return None

    def read(self, opt: argparse.Namespace) -> dict[str, SplitRecords]:
        source = pathlib.Path(opt.source_path).expanduser()
        folders = [source / self.folder, source / self.torchvision_folder / "raw"]
        found = [f for f in folders if self.find(f, FILES["train_images"]) is not None]
        if not found:
            raise DataError(
                f"--source_path: no {self.title} files at {folders[0]} or {folders[1]}; "
                f"expected {self.layout}"
            )
        paths = {}
        for key, name in FILES.items():
            paths[key] = self.find(found[0], name)
            if paths[key] is None:
                raise self.missing(found[0] / name, "file")
        arrays = {key: read_idx(path, 3 if "images" in key else 1) for key, path in paths.items()}
        for split in ("train", "test"):
            if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
                raise DataError(
                    f"{paths[f'{split}_labels']}: {len(arrays[f'{split}_labels'])} labels for "
                    f"{len(arrays[f'{split}_images'])} images in {paths[f'{split}_images']}"
                )
        labels = {split: arrays[f"{split}_labels"].astype(np.int64) for split in ("train", "test")}
        for split, values in labels.items():
            outside = values[(values < 0) | (values >= CLASSES)]
            if len(outside):
                raise DataError(
                    f"{paths[f'{split}_labels']}: {len(outside)} labels outside 0..{CLASSES - 1} "
                    f"(e.g. {int(outside[0])}); expected the {CLASSES} {self.title} classes"
                )
        if getattr(opt, "split_by_classes", False):
            images = np.concatenate([arrays["train_images"], arrays["test_images"]])
            return zero_shot(images, np.concatenate([labels["train"], labels["test"]]))
        return {
            split: SplitRecords(arrays[f"{split}_images"], labels[split])
            for split in ("train", "test")
        }
