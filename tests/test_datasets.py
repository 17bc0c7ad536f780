"""datasets/: layouts, splits, labels, train/validation splits, transforms and error messages."""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import datasets
from architectures.input_spec import InputSpec
from datasets.base import SplitRecords, split_by_classes, split_by_samples
from datasets.transforms import AUGMENTATIONS, eval_transform, train_transform
from tests.dataset_layouts import (
    IDX_NAMES,
    idx_bytes,
    make_cars196,
    make_cub200,
    make_dataset,
    make_fashion,
    make_inshop,
    make_mnist,
    make_online_products,
)
from utilities.errors import ConfigError, DataError

GREY28 = InputSpec(size=28, channels=1, mean=(0.5,), std=(0.5,), fixed_size=True)
RGB32 = InputSpec(size=32, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
ALL = ["digits", "mnist", "fashion", "cub200", "cars196", "online_products", "inshop"]


def make_opt(
    dataset: str, source_path: pathlib.Path | str = "/nonexistent", **flags
) -> argparse.Namespace:
    values = {
        "dataset": dataset,
        "source_path": str(source_path),
        "use_tv_split": False,
        "tv_split_by_samples": False,
        "tv_split_perc": 0.8,
        "augmentation": "base",
        "split_by_classes": False,
        "seed": 1,
    }
    values.update(flags)
    return argparse.Namespace(**values)


def load(dataset: str, root: pathlib.Path, **flags) -> dict[str, SplitRecords]:
    return datasets.DATASETS.get(dataset)().load(make_opt(dataset, root, **flags))


def assert_contiguous(labels: np.ndarray) -> None:
    assert labels.dtype == np.int64
    assert sorted(set(labels.tolist())) == list(range(len(set(labels.tolist()))))


# --- registry and defaults ----------------------------------------------------------------------


def test_registry_holds_every_dataset_and_defaults():
    assert datasets.DATASETS.keys() == sorted(ALL)
    assert datasets.dataset_defaults("digits") == {
        "arch": "c2f2_normalize",
        "lr": 1e-3,
        "augmentation": "none",
        "n_epochs": 12,
        "decay": 1e-7,
    }
    for key in ("mnist", "fashion"):
        assert datasets.dataset_defaults(key)["n_epochs"] == 8
    assert datasets.dataset_defaults("cub200") == datasets.dataset_defaults("cars196") == {}
    assert datasets.dataset_defaults("online_products") == {"n_epochs": 100}
    assert datasets.dataset_defaults("inshop") == {"n_epochs": 100}
    datasets.dataset_defaults("digits")["lr"] = 5.0
    assert datasets.dataset_defaults("digits")["lr"] == 1e-3
    with pytest.raises(ConfigError, match="--dataset.*cub200"):
        datasets.dataset_defaults("cub201")


# --- each layout ----------------------------------------------------------------------------------


def test_cub200_split_and_labels(tmp_path):
    splits = load("cub200", make_cub200(tmp_path, n_classes=6, per_class=3, apple_double=True))
    train, test = splits["train"], splits["test"]
    assert set(splits) == {"train", "test"}
    assert len(train) == len(test) == 9  # the ._ files are skipped
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    prefixes = [int(pathlib.Path(p).parent.name.split(".")[0]) for p in test.images]
    assert test.labels.tolist() == [p - 1 for p in prefixes] and set(prefixes) == {4, 5, 6}
    assert all(pathlib.Path(p).is_file() for p in train.images + test.images)
    assert train.images == sorted(train.images)


def test_cub200_sorts_by_integer_prefix(tmp_path):
    make_cub200(tmp_path, n_classes=12, per_class=1)
    splits = load("cub200", tmp_path)
    assert splits["test"].labels.tolist() == list(range(6, 12))
    folders = [pathlib.Path(p).parent.name for p in splits["train"].images]
    assert folders[-1].startswith("006.")


def test_cars196_split_follows_sorted_listing(tmp_path):
    splits = load("cars196", make_cars196(tmp_path, n_classes=6, per_class=3, apple_double=True))
    listing = sorted(p.name for p in (tmp_path / "cars196" / "images").iterdir())
    for records, first in ((splits["train"], 0), (splits["test"], 3)):
        names = [pathlib.Path(p).parent.name for p in records.images]
        assert records.labels.tolist() == [listing.index(n) for n in names]
        assert set(records.labels.tolist()) == set(range(first, first + 3))


def test_online_products_labels_are_class_id_minus_one(tmp_path):
    make_online_products(tmp_path, n_super=2, classes_per_super=5, per_class=2)
    splits = load("online_products", tmp_path)
    for split, offset in (("train", 0), ("test", 10)):
        records = splits[split]
        listed = (tmp_path / "online_products/Info_Files" / f"Ebay_{split}.txt").read_text()
        rows = [line.split() for line in listed.splitlines()[1:]]
        assert len(records) == len(rows) == 20
        assert records.labels.tolist() == [int(r[1]) - 1 for r in rows]
        assert set(records.labels.tolist()) == set(range(offset, offset + 10))
        assert all(pathlib.Path(p).is_file() for p in records.images)
    assert_contiguous(splits["train"].labels)


def test_inshop_joint_query_gallery_mapping(tmp_path):
    make_inshop(tmp_path, n_train_items=4, n_test_items=3, per_item=2, gallery_only_items=1)
    splits = load("inshop", tmp_path)
    train, test = splits["train"], splits["test"]
    assert len(train) == 8 and train.query is None
    assert_contiguous(train.labels)
    assert len(test) == 6 + 8
    assert test.query.dtype == bool and test.gallery.dtype == bool
    assert (test.query ^ test.gallery).all()
    assert test.query.sum() == 6 and test.gallery.sum() == 8
    items = [int(pathlib.Path(p).parent.name.split("_")[1]) for p in test.images]
    mapping = {item: rank for rank, item in enumerate(sorted(set(items)))}
    assert test.labels.tolist() == [mapping[i] for i in items]
    # the gallery-only item takes label 0, so query labels start at 1 under the joint mapping
    assert set(test.labels[test.query].tolist()) == {1, 2, 3}
    assert set(test.labels[test.gallery].tolist()) == {0, 1, 2, 3}
    assert all(pathlib.Path(p).is_file() for p in train.images + test.images)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("torchvision_layout", [False, True])
@pytest.mark.parametrize("key,maker", [("mnist", make_mnist), ("fashion", make_fashion)])
def test_idx_datasets(tmp_path, key, maker, gz, torchvision_layout):
    maker(tmp_path, n_train=30, n_test=20, gz=gz, torchvision_layout=torchvision_layout)
    splits = load(key, tmp_path)
    train, test = splits["train"], splits["test"]
    assert train.images.shape == (30, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (20, 28, 28)
    assert train.labels.tolist() == [i % 10 for i in range(30)]
    assert_contiguous(train.labels)
    zero_shot = load(key, tmp_path, split_by_classes=True)
    assert len(zero_shot["train"]) + len(zero_shot["test"]) == 50
    assert set(zero_shot["train"].labels.tolist()) == {0, 1, 2, 3, 4}
    assert set(zero_shot["test"].labels.tolist()) == {5, 6, 7, 8, 9}


def test_digits_split_by_samples_and_by_classes():
    splits = load("digits", pathlib.Path("/nonexistent"))
    train, test = splits["train"], splits["test"]
    assert train.images.shape[1:] == (28, 28) and train.images.dtype == np.uint8
    assert len(train) + len(test) == 1797 and train.images.max() > 200
    assert set(train.labels.tolist()) == set(test.labels.tolist()) == set(range(10))
    for label in range(10):
        n_train, n_test = (train.labels == label).sum(), (test.labels == label).sum()
        assert abs(n_train - 2 * n_test) <= 2
    again = load("digits", pathlib.Path("/elsewhere"), seed=7)
    assert np.array_equal(again["test"].images, test.images)
    zero_shot = load("digits", pathlib.Path("/nonexistent"), split_by_classes=True)
    assert set(zero_shot["train"].labels.tolist()) == set(range(5))
    assert set(zero_shot["test"].labels.tolist()) == set(range(5, 10))
    assert len(zero_shot["train"]) + len(zero_shot["test"]) == 1797


# --- train/validation split ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ALL)
def test_tv_split_by_classes(tmp_path, key):
    root = make_dataset(key, tmp_path)
    full = load(key, root)["train"]
    splits = load(key, root, use_tv_split=True)
    train, val = splits["train"], splits["val"]
    assert len(train) + len(val) == len(full) and len(val) > 0
    assert set(train.images if isinstance(train.images, list) else []).isdisjoint(
        val.images if isinstance(val.images, list) else []
    )
    assert_contiguous(train.labels)
    assert_contiguous(val.labels)
    n_classes = len(np.unique(full.labels))
    if key != "online_products":
        assert len(np.unique(train.labels)) == max(1, int(0.8 * n_classes + 1e-9))
    assert len(splits["test"]) == len(load(key, root)["test"])


@pytest.mark.parametrize("key", ALL)
def test_tv_split_by_samples(tmp_path, key):
    root = make_dataset(key, tmp_path)
    full = load(key, root)["train"]
    splits = load(key, root, use_tv_split=True, tv_split_by_samples=True, tv_split_perc=0.6)
    train, val = splits["train"], splits["val"]
    assert len(train) + len(val) == len(full)
    assert np.array_equal(np.unique(train.labels), np.unique(full.labels))
    assert set(val.labels.tolist()) <= set(train.labels.tolist())
    for label in np.unique(full.labels):
        n = int((full.labels == label).sum())
        n_train = int((train.labels == label).sum())
        assert n_train == (n if n < 2 else min(n - 1, max(1, int(np.ceil(0.6 * n - 1e-9)))))


def test_tv_split_sop_per_super_class(tmp_path):
    make_online_products(tmp_path, n_super=2, classes_per_super=5, per_class=2)
    splits = load("online_products", tmp_path, use_tv_split=True)
    full = load("online_products", tmp_path)["train"]
    val_classes = {int(full.labels[full.images.index(p)]) for p in splits["val"].images}
    # class ids alternate super-classes: the last class of each super-class goes to val
    assert val_classes == {8, 9}
    assert np.unique(splits["train"].labels).tolist() == list(range(8))
    assert np.unique(splits["val"].labels).tolist() == [0, 1]


def test_split_helpers_keep_both_sides():
    records = SplitRecords(np.zeros((7, 2, 2), np.uint8), np.array([0, 0, 0, 1, 1, 2, 5]))
    train, val = split_by_samples(records, 0.99)
    assert train.labels.tolist() == [0, 0, 1, 2, 5] and val.labels.tolist() == [0, 1]
    train, val = split_by_samples(records, 0.01)
    assert train.labels.tolist() == [0, 1, 2, 5] and val.labels.tolist() == [0, 0, 1]
    train, val = split_by_classes(records, 0.01)
    assert train.labels.tolist() == [0, 0, 0] and val.labels.tolist() == [0, 0, 1, 2]
    with pytest.raises(ConfigError, match="--use_tv_split"):
        split_by_classes(SplitRecords(np.zeros((2, 2, 2), np.uint8), np.array([3, 3])), 0.5)
    with pytest.raises(ConfigError, match="--tv_split_by_samples"):
        split_by_samples(SplitRecords(np.zeros((2, 2, 2), np.uint8), np.array([3, 4])), 0.5)


@pytest.mark.parametrize("perc", [0.0, 1.0, -0.2, 1.5])
def test_tv_split_perc_out_of_range(perc):
    opt = make_opt("digits", use_tv_split=True, tv_split_perc=perc, augmentation="none")
    with pytest.raises(ConfigError, match=r"--tv_split_perc.*\(0, 1\)"):
        datasets.build(opt, GREY28)


# --- transforms and torch datasets --------------------------------------------------------------


@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
@pytest.mark.parametrize("spec", [GREY28, RGB32], ids=["grey28", "rgb32"])
def test_transforms_shape_and_range(augmentation, spec):
    from PIL import Image

    images = [
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)),
        Image.fromarray(np.full((28, 28), 255, dtype=np.uint8)),
    ]
    if augmentation == "big" and spec.fixed_size:
        with pytest.raises(ConfigError, match="--augmentation"):
            train_transform(augmentation, spec)
        return
    side = round(256 * spec.size / 224) if augmentation == "big" else spec.size
    for build in (train_transform, eval_transform):
        transform = build(augmentation, spec)
        for image in images:
            x = transform(image)
            assert x.dtype == torch.float32
            assert x.shape == (spec.channels, side, side)
            assert x.min() >= 0.0 and x.max() <= 1.0
    assert eval_transform(augmentation, spec)(images[1]).min() == 1.0


def test_unknown_augmentation():
    expected = "--augmentation.*'huge'.*base, adv, big, red, auto, none"
    with pytest.raises(ConfigError, match=expected):
        eval_transform("huge", RGB32)


def test_build_items_and_loader(tmp_path):
    make_inshop(tmp_path)
    data = datasets.build(make_opt("inshop", tmp_path, use_tv_split=True), RGB32)
    assert data.val is not None and data.val.query is None
    image, label, index = data.test[3]
    assert image.shape == (3, 32, 32) and isinstance(label, int) and index == 3
    assert label == data.test.labels[3]
    assert data.test.query is not None and data.test.gallery is not None
    assert np.array_equal(data.evaluation.labels, data.train.labels)
    images, labels, indices = next(iter(DataLoader(data.train, batch_size=4, shuffle=False)))
    assert images.shape == (4, 3, 32, 32) and indices.tolist() == [0, 1, 2, 3]
    assert labels.tolist() == data.train.labels[:4].tolist()


def test_build_digits_grey():
    data = datasets.build(make_opt("digits", augmentation="none"), GREY28)
    assert data.val is None and data.test.query is None
    image, label, _ = data.train[5]
    assert label == data.train.labels[5]
    assert image.shape == (1, 28, 28) and image.min() >= 0 and image.max() <= 1
    assert torch.allclose(image[0] * 255, torch.as_tensor(data.train.images[5]).float(), atol=1e-3)
    assert data.train.labels.dtype == np.int64


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,layout",
    [
        ("cub200", "<source_path>/cub200/images/<NNN.Class_Name>/*.jpg"),
        ("cars196", "<source_path>/cars196/images/<class folder>/*.jpg"),
        ("online_products", "Ebay_train.txt"),
        ("inshop", "list_eval_partition.txt"),
    ],
)
def test_missing_folder_names_path_and_layout(tmp_path, key, layout):
    with pytest.raises(DataError) as error:
        load(key, tmp_path)
    message = str(error.value)
    assert "--source_path" in message and str(tmp_path / key) in message and layout in message
    assert "\n" not in message


def test_missing_images_folder_and_list_file(tmp_path):
    (tmp_path / "cub200").mkdir()
    with pytest.raises(DataError, match=f"folder at {tmp_path / 'cub200' / 'images'};"):
        load("cub200", tmp_path)
    make_online_products(tmp_path)
    (tmp_path / "online_products/Info_Files/Ebay_test.txt").unlink()
    with pytest.raises(DataError, match="file at .*Info_Files/Ebay_test.txt"):
        load("online_products", tmp_path)


@pytest.mark.parametrize("key", ["mnist", "fashion"])
def test_missing_idx_files(tmp_path, key):
    with pytest.raises(DataError) as error:
        load(key, tmp_path)
    assert str(tmp_path / key) in str(error.value) and "train-images-idx3-ubyte" in str(error.value)
    make_dataset(key, tmp_path)
    next((tmp_path / key).glob("t10k-labels*")).unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load(key, tmp_path)


def test_malformed_idx_files(tmp_path):
    make_mnist(tmp_path, gz=False)
    path = tmp_path / "mnist" / IDX_NAMES["train_images"]
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match=f"{path}: header says shape"):
        load("mnist", tmp_path)
    path.write_bytes(b"\x00\x00\x0d\x03" + bytes(12))
    with pytest.raises(DataError, match=f"{path}: not a uint8 IDX"):
        load("mnist", tmp_path)
    path.write_bytes(idx_bytes(np.zeros((3, 28, 28), np.uint8)))
    with pytest.raises(DataError, match="3 images"):
        load("mnist", tmp_path)
    labels = tmp_path / "mnist" / IDX_NAMES["train_labels"]
    labels.unlink()
    (tmp_path / "mnist" / f"{IDX_NAMES['train_labels']}.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: unreadable"):
        load("mnist", tmp_path)


def test_malformed_list_files(tmp_path):
    make_online_products(tmp_path)
    listing = tmp_path / "online_products/Info_Files/Ebay_train.txt"
    listing.write_text("image_id class super_class_id path\n1 1 1 a.JPG\n")
    with pytest.raises(DataError, match=f"{listing}: header"):
        load("online_products", tmp_path)
    listing.write_text("image_id class_id super_class_id path\n1 x 1 a.JPG\n")
    with pytest.raises(DataError, match=f"{listing}: line 2"):
        load("online_products", tmp_path)
    make_inshop(tmp_path)
    partition = tmp_path / "inshop/Eval/list_eval_partition.txt"
    lines = partition.read_text().splitlines()
    partition.write_text("\n".join(lines[1:]))
    with pytest.raises(DataError, match=f"{partition}: expected a first line"):
        load("inshop", tmp_path)
    partition.write_text("\n".join(lines[:5] + ["img/x.jpg id_00000001 validation"]))
    with pytest.raises(DataError, match=f"{partition}: line 6"):
        load("inshop", tmp_path)
    partition.write_text("\n".join(["99"] + lines[1:]))
    with pytest.raises(DataError, match="first line says 99 images"):
        load("inshop", tmp_path)


def test_bad_class_folders(tmp_path):
    make_cub200(tmp_path, n_classes=2, per_class=1)
    (tmp_path / "cub200/images/Unnumbered").mkdir()
    with pytest.raises(DataError, match="Unnumbered: class folder name has no integer prefix"):
        load("cub200", tmp_path)
    (tmp_path / "cub200/images/Unnumbered").rmdir()
    (tmp_path / "cub200/images/003.Empty").mkdir()
    with pytest.raises(DataError, match="003.Empty: class folder holds no images"):
        load("cub200", tmp_path)
    make_cars196(tmp_path / "one", n_classes=1)
    with pytest.raises(DataError, match="found 1 class folders"):
        load("cars196", tmp_path / "one")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_corrupt_image_names_the_file(tmp_path, damage):
    make_cub200(tmp_path, n_classes=2, per_class=2)
    data = datasets.build(make_opt("cub200", tmp_path), RGB32)
    path = pathlib.Path(data.train.images[1])
    if damage == "garbage":
        path.write_bytes(b"this is not a jpeg")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:60])
    else:
        path.unlink()
    data.train[0]
    with pytest.raises(DataError, match=f"{path}: corrupt or unreadable image"):
        data.train[1]
