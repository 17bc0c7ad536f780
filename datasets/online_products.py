"""Stanford Online Products (Oh Song et al., "Deep Metric Learning via Lifted Structured Feature
Embedding", CVPR 2016)."""

from __future__ import annotations

import argparse
import pathlib
from typing import Any, ClassVar

import numpy as np

from datasets import DATASETS
from datasets.base import DatasetSource, SplitRecords, contiguous
from utilities.errors import DataError

HEADER = ["image_id", "class_id", "super_class_id", "path"]


def read_list(list_file: pathlib.Path, images_dir: pathlib.Path) -> SplitRecords:
    """One ``Ebay_*.txt``: labels ``class_id − 1``, groups ``super_class_id``."""
    lines = list_file.read_text().splitlines()
    header = lines[0].split() if lines else []
    if header != HEADER:
        raise DataError(f"{list_file}: header {header}; expected {' '.join(HEADER)}")
    images, labels, groups = [], [], []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4 or not (fields[1].isdigit() and fields[2].isdigit()):
            raise DataError(
                f"{list_file}: line {number} is {line!r}; expected "
                "'<image_id> <class_id> <super_class_id> <path>' with integer ids"
            )
        images.append(str(images_dir / fields[3]))
        labels.append(int(fields[1]) - 1)
        groups.append(int(fields[2]))
    if not images:
        raise DataError(f"{list_file}: no images listed; expected one line per image")
    return SplitRecords(images, np.asarray(labels), groups=np.asarray(groups, dtype=np.int64))


@DATASETS.register("online_products")
class OnlineProducts(DatasetSource):
    """Stanford Online Products: train = ``Ebay_train.txt`` (11,318 classes, 59,551 images),
    test = ``Ebay_test.txt`` (11,316 classes, 60,502 images); label = class_id − 1.

    A train/validation split by classes takes the first ``--tv_split_perc`` of the classes of
    each super-class, as the reference does (without its label −1 defect).
    """

    title = "Stanford Online Products"
    folder = "online_products"
    layout = (
        "<source_path>/online_products/Info_Files/Ebay_train.txt and Ebay_test.txt (header "
        "'image_id class_id super_class_id path', paths relative to online_products/images/)"
    )
    defaults: ClassVar[dict[str, Any]] = {"n_epochs": 100}

    def read(self, opt: argparse.Namespace) -> dict[str, SplitRecords]:
        images_dir = self.locate(opt, "images")
        train = read_list(self.locate(opt, "Info_Files", "Ebay_train.txt"), images_dir)
        test = read_list(self.locate(opt, "Info_Files", "Ebay_test.txt"), images_dir)
        train.labels = contiguous(train.labels)
        test.groups = None
        return {"train": train, "test": test}
