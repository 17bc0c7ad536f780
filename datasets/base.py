"""Split records, the dataset base class, the torch image dataset and the train/validation split.

A registered :class:`DatasetSource` reads its on-disk layout into :class:`SplitRecords` (file
paths or uint8 arrays plus int64 labels); :class:`ImageDataset` turns records into torch items
``(image, label, index)`` through a transform built from the architecture's input spec.
"""

from __future__ import annotations

import argparse
import math
import pathlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from utilities.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class SplitRecords:
    """The samples of one split.

    ``images``: list of file paths, or a uint8 array N×H×W (grey) / N×H×W×3 (RGB).
    ``labels``: int64 (N,). ``query``/``gallery``: boolean (N,) masks of the query/gallery protocol
    (In-Shop), else ``None``. ``groups``: int64 (N,) super-class of each sample (SOP), used to split
    train/validation classes within each group, else ``None``.
    """

    images: list[str] | np.ndarray
    labels: np.ndarray
    query: np.ndarray | None = None
    gallery: np.ndarray | None = None
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray, labels: np.ndarray | None = None) -> SplitRecords:
        """The samples at ``indices`` (in that order), optionally with new labels."""
        indices = np.asarray(indices, dtype=np.int64)
        if isinstance(self.images, np.ndarray):
            images: list[str] | np.ndarray = self.images[indices]
        else:
            images = [self.images[i] for i in indices]

        def pick(mask: np.ndarray | None) -> np.ndarray | None:
            return None if mask is None else mask[indices]

        return SplitRecords(
            images,
            self.labels[indices] if labels is None else labels,
            pick(self.query),
            pick(self.gallery),
            pick(self.groups),
        )


def contiguous(labels: np.ndarray) -> np.ndarray:
    """Labels mapped to 0..C-1 in sorted order of the original ids."""
    return np.unique(labels, return_inverse=True)[1].astype(np.int64).reshape(-1)


def _kept(n: int, wanted: int) -> int:
    """``wanted`` clamped so that ``n`` ≥ 2 items keep at least one on each side."""
    return n if n < 2 else min(n - 1, max(1, wanted))


def split_by_classes(records: SplitRecords, perc: float) -> tuple[SplitRecords, SplitRecords]:
    """Train/validation split by classes: the first ``floor(perc·C)`` sorted classes stay train.

    With ``records.groups`` (SOP super-classes) the rule applies within each group, as the
    reference does. Both parts are relabelled 0..C-1.
    """
    classes, first = np.unique(records.labels, return_index=True)
    class_group = np.zeros(len(classes)) if records.groups is None else records.groups[first]
    train_classes = []
    for group in np.unique(class_group):
        members = classes[class_group == group]
        train_classes.append(members[: _kept(len(members), math.floor(perc * len(members) + 1e-9))])
    is_train = np.isin(records.labels, np.concatenate(train_classes))
    train_idx, val_idx = np.flatnonzero(is_train), np.flatnonzero(~is_train)
    if len(val_idx) == 0 or len(train_idx) == 0:
        raise ConfigError(
            f"--use_tv_split: {len(classes)} training classes cannot be split by classes at "
            f"--tv_split_perc {perc}; expected at least 2 classes (or use --tv_split_by_samples)"
        )
    train = records.subset(train_idx, contiguous(records.labels[train_idx]))
    val = records.subset(val_idx, contiguous(records.labels[val_idx]))
    return train, val


def split_by_samples(records: SplitRecords, perc: float) -> tuple[SplitRecords, SplitRecords]:
    """Train/validation split by samples: per class, the first ``ceil(perc·n)`` samples stay train.

    A class with n ≥ 2 samples keeps at least one on each side; labels are shared.
    """
    train_idx, val_idx = [], []
    for label in np.unique(records.labels):
        members = np.flatnonzero(records.labels == label)
        cut = _kept(len(members), math.ceil(perc * len(members) - 1e-9))
        train_idx.append(members[:cut])
        val_idx.append(members[cut:])
    train_all, val_all = np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))
    if len(val_all) == 0:
        raise ConfigError(
            "--tv_split_by_samples: every training class has a single sample; expected classes "
            "with at least 2 samples to split"
        )
    return records.subset(train_all), records.subset(val_all)


def train_val_split(records: SplitRecords, opt: argparse.Namespace) -> tuple[SplitRecords, ...]:
    """``(train, val)`` per ``--tv_split_perc`` and ``--tv_split_by_samples``."""
    check_tv_split_perc(opt.tv_split_perc)
    if opt.tv_split_by_samples:
        return split_by_samples(records, opt.tv_split_perc)
    return split_by_classes(records, opt.tv_split_perc)


def check_tv_split_perc(perc: float) -> None:
    if not 0 < perc < 1:
        raise ConfigError(f"--tv_split_perc: got {perc}, expected a value in (0, 1)")


class DatasetSource:
    """A dataset on disk (or bundled): reads its layout into train and test :class:`SplitRecords`.

    Subclasses set ``title`` (human name), ``folder`` (sub-folder of ``--source_path``),
    ``layout`` (the expected on-disk layout, quoted in error messages), ``defaults`` (dataset
    defaults for flags the user did not give) and implement :meth:`read`.
    """

    title: str = ""
    folder: str = ""
    layout: str = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def read(self, opt: argparse.Namespace) -> dict[str, SplitRecords]:
        """``{"train": ..., "test": ...}``, train labels contiguous 0..C-1."""
        raise NotImplementedError

    def load(self, opt: argparse.Namespace) -> dict[str, SplitRecords]:
        """``train`` and ``test`` and, with ``--use_tv_split``, ``val`` split off train."""
        splits = self.read(opt)
        if getattr(opt, "use_tv_split", False):
            splits["train"], splits["val"] = train_val_split(splits["train"], opt)
        return splits

    def locate(self, opt: argparse.Namespace, *parts: str) -> pathlib.Path:
        """``<source_path>/<folder>/<parts...>``; DataError naming the first missing level."""
        path = pathlib.Path(opt.source_path).expanduser() / self.folder
        for level in [path, *(path.joinpath(*parts[: i + 1]) for i in range(len(parts)))]:
            if not level.exists():
                raise self.missing(level, "file" if level.suffix else "folder")
        return path.joinpath(*parts)

    def missing(self, path: pathlib.Path, what: str) -> DataError:
        return DataError(f"--source_path: no {self.title} {what} at {path}; expected {self.layout}")


def class_folders(images_dir: pathlib.Path) -> list[pathlib.Path]:
    """Sub-folders of ``images_dir``, skipping macOS ``._`` and hidden entries."""
    return [p for p in images_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]


def folder_images(folder: pathlib.Path) -> list[str]:
    """Sorted image files of one class folder; DataError if it holds none."""
    files = sorted(
        str(p)
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith("._") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise DataError(f"{folder}: class folder holds no images; expected *.jpg files")
    return files


def folder_records(folders: list[pathlib.Path], ids: list[int]) -> SplitRecords:
    """Records of class folders, the images of ``folders[i]`` labelled ``ids[i]``."""
    images, labels = [], []
    for folder, label in zip(folders, ids, strict=False):
        files = folder_images(folder)
        images += files
        labels += [label] * len(files)
    return SplitRecords(images, np.asarray(labels, dtype=np.int64))


def halves(folders: list[pathlib.Path], ids: list[int], images_dir: pathlib.Path) -> dict:
    """Zero-shot split of class folders: first half of the classes train (relabelled 0..C-1),
    the second half test (labels ``ids``); 100/100 on CUB200-2011 and 98/98 on CARS196."""
    if len(folders) < 2:
        raise DataError(
            f"{images_dir}: found {len(folders)} class folders; expected at least 2 (first half "
            "of the classes train, second half test)"
        )
    half = len(folders) // 2
    train = folder_records(folders[:half], ids[:half])
    train.labels = contiguous(train.labels)
    return {"train": train, "test": folder_records(folders[half:], ids[half:])}


class ImageDataset(Dataset):
    """Torch dataset over :class:`SplitRecords`: items ``(transform(image), label, index)``.

    Files are opened lazily with PIL; uint8 arrays become PIL images on the fly, so the same
    transforms apply. ``labels`` (int64 numpy), ``query``/``gallery`` (boolean masks or ``None``).
    """

    def __init__(self, records: SplitRecords, transform: Callable[[Image.Image], Any]) -> None:
        self.images = records.images
        self.labels = records.labels
        self.query = records.query
        self.gallery = records.gallery
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> Image.Image:
        """The PIL image of sample ``index``; DataError naming the file if it cannot be read."""
        if isinstance(self.images, np.ndarray):
            return Image.fromarray(self.images[index])
        path = self.images[index]
        try:
            with Image.open(path) as image:
                image.load()
                return image
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise DataError(f"{path}: corrupt or unreadable image ({error})") from None

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        return self.transform(self.image(index)), int(self.labels[index]), index

    def check_files(self, description: str, threads: int = 1) -> None:
        """Decode every image file once (JPEGs at 1/8 scale, which is fast), so a missing or
        corrupt file stops the run at start-up; DataError names the first bad file."""
        if isinstance(self.images, np.ndarray):
            return
        with ThreadPoolExecutor(max(1, threads)) as pool:
            problems = pool.map(_probe_image, self.images)
            for problem in tqdm(problems, total=len(self.images), leave=False, disable=None,
                                desc=f"checking the {description} images"):  # fmt: skip
                if problem is not None:
                    raise DataError(problem)


def _probe_image(path: str) -> str | None:
    """None when ``path`` decodes, else the error line."""
    try:
        with Image.open(path) as image:
            image.draft(image.mode, (1, 1))  # JPEG: decode at the smallest DCT scale
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return f"{path}: corrupt or unreadable image ({error})"
    return None


@dataclass
class DataSplits:
    """What :func:`datasets.build` returns: the torch datasets of one run.

    ``train`` (train augmentation), ``evaluation`` (training images, evaluation transform),
    ``test`` and ``val`` (``None`` without ``--use_tv_split``).
    """

    train: ImageDataset
    evaluation: ImageDataset
    test: ImageDataset
    val: ImageDataset | None = None
