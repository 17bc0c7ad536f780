"""In-Shop Clothes Retrieval (Liu et al., "DeepFashion: Powering Robust Clothes Recognition and
Retrieval with Rich Annotations", CVPR 2016)."""

from __future__ import annotations

import argparse
import pathlib
from typing import Any, ClassVar

import numpy as np

from datasets import DATASETS
from datasets.base import DatasetSource, SplitRecords, contiguous
from utilities.errors import DataError

HEADER = ["image_name", "item_id", "evaluation_status"]
STATUSES = ("train", "query", "gallery")


def read_partition(list_file: pathlib.Path, root: pathlib.Path) -> dict[str, tuple[list, list]]:
    """``status -> (image paths, integer item ids)`` from ``list_eval_partition.txt``."""
    lines = list_file.read_text().splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit() or lines[1].split() != HEADER:
        raise DataError(
            f"{list_file}: expected a first line with the image count and a second line "
            f"'{' '.join(HEADER)}'"
        )
    parts: dict[str, tuple[list, list]] = {status: ([], []) for status in STATUSES}
    rows = [(number, line.split()) for number, line in enumerate(lines[2:], 3) if line.strip()]
    for number, fields in rows:
        item = fields[1].rsplit("_", 1)[-1] if len(fields) == 3 else ""
        if not item.isdigit() or fields[2] not in STATUSES:
            raise DataError(
                f"{list_file}: line {number} is {' '.join(fields)!r}; expected "
                "'<image_name> id_<NNNNNNNN> <train|query|gallery>'"
            )
        parts[fields[2]][0].append(str(root / fields[0]))
        parts[fields[2]][1].append(int(item))
    if len(rows) != int(lines[0]):
        raise DataError(
            f"{list_file}: first line says {lines[0].strip()} images, found {len(rows)}"
        )
    return parts


@DATASETS.register("inshop")
class InShop(DatasetSource):
    """In-Shop: train 3,997 items / 25,882 images; test = query (14,218) ∪ gallery (12,612) of
    3,985 items, evaluated query against gallery.

    Label = the integer of ``item_id`` (``id_00000001`` → 1). Train labels are relabelled
    0..C-1; query and gallery share ONE joint mapping over their union (methods.md §B.5). The test
    split lists the query images, then the gallery images, with boolean ``query``/``gallery``
    masks.
    """

    title = "In-Shop"
    folder = "inshop"
    layout = (
        "<source_path>/inshop/Eval/list_eval_partition.txt (count line, then header "
        "'image_name item_id evaluation_status'; image paths relative to <source_path>/inshop/)"
    )
    defaults: ClassVar[dict[str, Any]] = {"n_epochs": 100}

    def read(self, opt: argparse.Namespace) -> dict[str, SplitRecords]:
        list_file = self.locate(opt, "Eval", "list_eval_partition.txt")
        parts = read_partition(list_file, list_file.parent.parent)
        for status in STATUSES:
            if not parts[status][0]:
                raise DataError(f"{list_file}: no '{status}' images; expected train/query/gallery")
        train_images, train_items = parts["train"]
        query_images, query_items = parts["query"]
        gallery_images, gallery_items = parts["gallery"]
        n_query = len(query_images)
        is_query = np.arange(n_query + len(gallery_images)) < n_query
        test = SplitRecords(
            query_images + gallery_images,
            contiguous(np.asarray(query_items + gallery_items)),
            query=is_query,
            gallery=~is_query,
        )
        return {
            "train": SplitRecords(train_images, contiguous(np.asarray(train_items))),
            "test": test,
        }
