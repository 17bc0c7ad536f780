"""Tiny datasets in each real dataset's exact on-disk layout, for tests.

Each ``make_<dataset>(root, ...)`` writes under ``root`` and returns the path to pass as
``--source_path``. Images are small real JPEG/PNG files whose colour depends on the class (plus
noise), so a model can learn them in a few steps; the IDX files of MNIST/Fashion-MNIST hold
class-dependent patterns.
"""

from __future__ import annotations

import gzip
import pathlib

import numpy as np
from PIL import Image

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def write_image(
    path: pathlib.Path, label: int, index: int, size: tuple[int, int] = (16, 12)
) -> None:
    """A ``size`` (width, height) RGB image: a class colour plus noise; format from the suffix."""
    rng = np.random.default_rng(1000 * label + index)
    colour = np.array([(37 * label) % 256, (91 * label + 50) % 256, (153 * label + 100) % 256])
    noise = rng.integers(-20, 21, size=(size[1], size[0], 3))
    pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.fromarray(pixels).save(path, format=fmt)


def write_apple_double(folder: pathlib.Path, name: str) -> None:
    """A macOS ``._`` metadata file, which the loaders must skip."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"._{name}").write_bytes(b"\x00\x05\x16\x07 not an image")


def make_cub200(
    root: pathlib.Path, n_classes: int = 6, per_class: int = 3, apple_double: bool = False
) -> pathlib.Path:
    """``<root>/cub200/images/<NNN.Class_Name>/*.jpg``, classes 001..n_classes (first half train).

    ``apple_double``: also write macOS ``._*.jpg`` metadata files, which the loader must skip.
    """
    images = pathlib.Path(root) / "cub200" / "images"
    for c in range(n_classes):
        name = f"Bird_Species_{c + 1}"
        folder = images / f"{c + 1:03d}.{name}"
        for i in range(per_class):
            write_image(folder / f"{name}_{i + 1:04d}_{100 + i}.jpg", c, i, (16 + c % 3, 12))
        if apple_double:
            write_apple_double(folder, f"{name}_0001_100.jpg")
    if apple_double:
        write_apple_double(images, "001.Bird_Species_1")
    return pathlib.Path(root)


def make_cars196(
    root: pathlib.Path, n_classes: int = 6, per_class: int = 3, apple_double: bool = False
) -> pathlib.Path:
    """``<root>/cars196/images/<class folder>/*.jpg`` with names that sort in class order.

    ``apple_double``: also write macOS ``._*.jpg`` metadata files, which the loader must skip.
    """
    images = pathlib.Path(root) / "cars196" / "images"
    for c in range(n_classes):
        folder = images / f"Make{c:02d} Model Sedan {2000 + c}"
        for i in range(per_class):
            write_image(folder / f"{c * per_class + i + 1:05d}.jpg", c, i, (12, 16))
        if apple_double:
            write_apple_double(folder, "00001.jpg")
    return pathlib.Path(root)


def make_online_products(
    root: pathlib.Path, n_super: int = 2, classes_per_super: int = 5, per_class: int = 2
) -> pathlib.Path:
    """``<root>/online_products/{images/<super>_final/*.JPG, Info_Files/Ebay_{train,test}.txt}``.

    Train and test each get ``n_super · classes_per_super`` classes; class ids run 1..C in train
    and continue in test, as in the real lists. Within a list, super-classes are interleaved.
    """
    base = pathlib.Path(root) / "online_products"
    supers = [f"super{s}" for s in range(n_super)]
    image_id, class_id = 1, 1
    for split in ("train", "test"):
        lines = ["image_id class_id super_class_id path"]
        for _ in range(classes_per_super):
            for s, super_name in enumerate(supers):
                product = 100000 + class_id
                for i in range(per_class):
                    rel = f"{super_name}_final/{product}_{i}.JPG"
                    write_image(base / "images" / rel, class_id, i)
                    lines.append(f"{image_id} {class_id} {s + 1} {rel}")
                    image_id += 1
                class_id += 1
        (base / "Info_Files").mkdir(parents=True, exist_ok=True)
        (base / "Info_Files" / f"Ebay_{split}.txt").write_text("\n".join(lines) + "\n")
    return pathlib.Path(root)


def make_inshop(
    root: pathlib.Path,
    n_train_items: int = 4,
    n_test_items: int = 3,
    per_item: int = 2,
    gallery_only_items: int = 1,
) -> pathlib.Path:
    """``<root>/inshop/{img/..., Eval/list_eval_partition.txt}``.

    Train (odd) and test (even) item ids are disjoint and interleaved; each test item has
    ``per_item`` query and ``per_item`` gallery images; ``gallery_only_items`` extra items with the
    smallest test ids appear in the gallery only, so the joint query ∪ gallery label mapping
    differs from two independent ones.
    """
    base = pathlib.Path(root) / "inshop"
    rows = []

    def add(item: int, status: str, count: int, offset: int) -> None:
        for i in range(count):
            rel = f"img/WOMEN/Dresses/id_{item:08d}/{i + offset + 1:02d}_{i % 4 + 1}_front.jpg"
            write_image(base / rel, item, i + offset)
            rows.append(f"{rel} id_{item:08d} {status}")

    test_items = [2 * (gallery_only_items + k + 1) for k in range(n_test_items)]
    for k in range(n_train_items):
        add(2 * k + 1, "train", per_item, 0)
    for item in test_items:
        add(item, "query", per_item, 0)
    for k in range(gallery_only_items):
        add(2 * (k + 1), "gallery", per_item, 0)
    for item in test_items:
        add(item, "gallery", per_item, per_item)
    (base / "Eval").mkdir(parents=True, exist_ok=True)
    header = [str(len(rows)), "image_name item_id evaluation_status"]
    (base / "Eval" / "list_eval_partition.txt").write_text("\n".join(header + rows) + "\n")
    return pathlib.Path(root)


def idx_bytes(array: np.ndarray) -> bytes:
    """A uint8 array in IDX format (magic 0x0000 08 <ndim>, big-endian int32 sizes, data)."""
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _digit_pattern(labels: np.ndarray, seed: int) -> np.ndarray:
    """N×28×28 uint8: a bright 4-px band whose row depends on the class, plus noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(len(labels), 28, 28)).astype(np.uint8)
    for label in range(10):
        images[labels == label, 2 + 2 * label : 6 + 2 * label, 4:24] = 230
    return images


def _make_idx(root: pathlib.Path, folder: str, n_train: int, n_test: int, gz: bool) -> pathlib.Path:
    target = pathlib.Path(root) / folder
    target.mkdir(parents=True, exist_ok=True)
    labels = {"train": np.arange(n_train) % 10, "test": np.arange(n_test) % 10}
    arrays = {
        "train_images": _digit_pattern(labels["train"], 0),
        "train_labels": labels["train"].astype(np.uint8),
        "test_images": _digit_pattern(labels["test"], 1),
        "test_labels": labels["test"].astype(np.uint8),
    }
    for key, name in IDX_NAMES.items():
        data = idx_bytes(arrays[key])
        if gz:
            (target / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (target / name).write_bytes(data)
    return pathlib.Path(root)


def make_mnist(
    root: pathlib.Path,
    n_train: int = 60,
    n_test: int = 20,
    gz: bool = True,
    torchvision_layout: bool = False,
) -> pathlib.Path:
    """The four MNIST IDX files (``.gz`` or plain) under ``<root>/mnist/`` or, with
    ``torchvision_layout``, ``<root>/MNIST/raw/``; labels cycle 0..9."""
    folder = "MNIST/raw" if torchvision_layout else "mnist"
    return _make_idx(root, folder, n_train, n_test, gz)


def make_fashion(
    root: pathlib.Path,
    n_train: int = 60,
    n_test: int = 20,
    gz: bool = True,
    torchvision_layout: bool = False,
) -> pathlib.Path:
    """As :func:`make_mnist`, under ``<root>/fashion/`` or ``<root>/FashionMNIST/raw/``."""
    folder = "FashionMNIST/raw" if torchvision_layout else "fashion"
    return _make_idx(root, folder, n_train, n_test, gz)


MAKERS = {
    "cub200": make_cub200,
    "cars196": make_cars196,
    "online_products": make_online_products,
    "inshop": make_inshop,
    "mnist": make_mnist,
    "fashion": make_fashion,
}


def make_dataset(key: str, root: pathlib.Path) -> pathlib.Path:
    """Write the tiny layout of ``--dataset key`` under ``root``; return the source path."""
    if key == "digits":
        return pathlib.Path(root)
    return MAKERS[key](root)
