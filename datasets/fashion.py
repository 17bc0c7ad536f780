"""Fashion-MNIST (Xiao et al., "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
Learning Algorithms", 2017): MNIST's IDX format and protocol (robustness.md §5.5)."""

from __future__ import annotations

from datasets import DATASETS
from datasets.mnist import Mnist


@DATASETS.register("fashion")
class Fashion(Mnist):
    """Fashion-MNIST: 60,000 train / 10,000 test images of 10 clothing classes, 1×28×28.
    ``--split_by_classes``: classes 0–4 train, 5–9 test over all 70,000. Never downloaded.
    """

    title = "Fashion-MNIST"
    folder = "fashion"
    torchvision_folder = "FashionMNIST"
    layout = (
        "<source_path>/fashion/ or <source_path>/FashionMNIST/raw/ holding "
        "train-images-idx3-ubyte, "
        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (plain or .gz)"
    )
