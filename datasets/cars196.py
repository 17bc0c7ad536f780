"""CARS196 (Krause et al., "3D Object Representations for Fine-Grained Categorization", 2013)."""

from __future__ import annotations

import argparse

from datasets import DATASETS
from datasets.base import DatasetSource, SplitRecords, class_folders, halves


@DATASETS.register("cars196")
class Cars196(DatasetSource):
    """CARS196 with the zero-shot split of Oh Song et al. (CVPR 2016).

    Classes = the lexicographically sorted class folders; label = position in that listing.
    Train = the first half (98 classes, 8,054 images), test = the rest (98 classes, 8,131
    images). This matches the standard 1–98 / 99–196 split when the folder names sort in class-id
    order, as in the reference's prepared archive.
    """

    title = "CARS196"
    folder = "cars196"
    layout = "<source_path>/cars196/images/<class folder>/*.jpg"

    def read(self, opt: argparse.Namespace) -> dict[str, SplitRecords]:
        images_dir = self.locate(opt, "images")
        folders = sorted(class_folders(images_dir), key=lambda folder: folder.name)
        return halves(folders, list(range(len(folders))), images_dir)
