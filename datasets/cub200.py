"""CUB200-2011 (Wah et al., "The Caltech-UCSD Birds-200-2011 Dataset", 2011)."""

from __future__ import annotations

import argparse

from datasets import DATASETS
from datasets.base import DatasetSource, SplitRecords, class_folders, halves
from utilities.errors import DataError


@DATASETS.register("cub200")
class Cub200(DatasetSource):
    """CUB200-2011 with the zero-shot split of Oh Song et al. (CVPR 2016).

    Classes sorted by the integer prefix of their folder ``NNN.Class_Name``; label = NNN − 1.
    Train = the first half of the classes (001–100: 5,864 images), test = the rest (101–200:
    5,924 images). Files starting with ``._`` are skipped; images sorted per class.
    """

    title = "CUB200-2011"
    folder = "cub200"
    layout = "<source_path>/cub200/images/<NNN.Class_Name>/*.jpg"

    def read(self, opt: argparse.Namespace) -> dict[str, SplitRecords]:
        images_dir = self.locate(opt, "images")
        prefixed = []
        for folder in class_folders(images_dir):
            prefix = folder.name.split(".", 1)[0]
            if not prefix.isdigit():
                raise DataError(
                    f"{folder}: class folder name has no integer prefix; expected {self.layout}"
                )
            prefixed.append((int(prefix), folder))
        prefixed.sort()
        folders = [folder for _, folder in prefixed]
        return halves(folders, [prefix - 1 for prefix, _ in prefixed], images_dir)
