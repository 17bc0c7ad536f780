"""Tests of the `_double` (GAP + GMP) and `_layernorm` suffixes, the IDML uncertainty head
(`--idml`) and its uncertainty embeddings through `eval.py --save_embeddings`."""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import pytest
import torch
from torch import nn

import architectures
import eval as eval_cli
import main
import parameters
from architectures import ARCHITECTURES, ArchName, parse_arch
from architectures.base import GlobalAvgMaxPool
from utilities.checkpoint import load_checkpoint, save_checkpoint
from utilities.embedding_files import read_embeddings, write_embeddings
from utilities.errors import ConfigError

EMBED_DIM = 8
POOLING_BASES = [key for key in ARCHITECTURES if ARCHITECTURES.get(key).pooling_module]
# Small inputs where the backbone allows it (every pooling backbone pools adaptively).
SIDE = {"c2f2": 28, "resnet18": 64, "resnet50": 64, "bninception": 64, "googlenet": 64}


def make_opt(arch: str, **overrides) -> argparse.Namespace:
    flags = {"arch": arch, "embed_dim": EMBED_DIM, "not_pretrained": True, "pretrained_path": None}
    flags.update(overrides)
    return argparse.Namespace(**flags)


def images_for(base: str, batch: int = 2) -> torch.Tensor:
    channels = ARCHITECTURES.get(base).input_spec.channels
    side = SIDE[base]
    return torch.rand(batch, channels, side, side, generator=torch.Generator().manual_seed(0))


def test_global_avg_max_pool_on_a_hand_checked_map() -> None:
    x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]], [[-4.0, 0.0], [-2.0, -2.0]]]])  # 1×2×2×2
    # channel 0: mean 3 + max 6; channel 1: mean -2 + max 0
    expected = torch.tensor([9.0, -2.0]).view(1, 2, 1, 1)
    torch.testing.assert_close(GlobalAvgMaxPool()(x), expected)


def test_pooling_bases_are_the_backbones_with_a_pooling_step() -> None:
    assert set(POOLING_BASES) == {"resnet18", "resnet50", "bninception", "googlenet"}
    assert ARCHITECTURES.get("c2f2").pooling_module is None


# resnet50 under the DADA name: `_double` among other suffixes.
DOUBLE_NAMES = {base: base + "_double" for base in POOLING_BASES}
DOUBLE_NAMES["resnet50"] = "resnet50_frozen_layernorm_double"


@pytest.mark.parametrize("base", POOLING_BASES)
def test_double_pools_avg_plus_max_and_the_idml_head_reads_the_pooled_features(base: str) -> None:
    model = architectures.build(make_opt(DOUBLE_NAMES[base], idml=True)).train()
    pool = getattr(model.backbone, model.pooling_module)
    assert isinstance(pool, GlobalAvgMaxPool)
    seen = {}
    pool.register_forward_pre_hook(lambda _, args: seen.update(map=args[0]))
    with torch.no_grad():
        out = model(images_for(base))
    feature_map = seen["map"]
    width = model.last_linear.in_features
    assert feature_map.shape[:2] == (2, width) and feature_map.shape[2] * feature_map.shape[3] > 1
    assert out["features"].shape == (2, width) and out["embeds"].shape == (2, EMBED_DIM)
    average, maximum = feature_map.mean(dim=(2, 3)), feature_map.amax(dim=(2, 3))
    torch.testing.assert_close(out["features"], average + maximum)
    head = model.uncertainty_head
    assert (head.in_features, head.out_features) == (width, EMBED_DIM)
    assert out["uncertainty"].shape == (2, EMBED_DIM)
    torch.testing.assert_close(out["uncertainty"], head(out["features"]))
    if model.frozen:
        assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_double_on_c2f2_is_refused_naming_the_flag() -> None:
    for name in ("c2f2_double", "c2f2_normalize_double"):
        with pytest.raises(ConfigError) as caught:
            parse_arch(name)
        message = str(caught.value)
        assert message.startswith("--arch") and name in message and "\n" not in message
        assert "no global pooling" in message and "resnet50" in message
    assert not any("c2f2" in n and "double" in n for n in architectures.valid_arch_names())
    with pytest.raises(ConfigError, match="--arch"):
        parameters.parse_args(["--arch", "c2f2_double"])


def test_layernorm_rows_have_zero_mean_and_unit_variance() -> None:
    base = "c2f2"
    model = architectures.build(make_opt(base + "_layernorm", embed_dim=32)).eval()
    assert not list(model.embedding_norm.parameters())
    with torch.no_grad():
        model.last_linear.weight.mul_(100)  # rows of variance far above LayerNorm's ε = 1e-5
        out = model(images_for(base, batch=3))
    embeds = out["embeds"]
    torch.testing.assert_close(embeds.mean(dim=1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(embeds.var(dim=1, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    raw = model.last_linear(out["features"])
    expected = (raw - raw.mean(1, keepdim=True)) / (
        raw.var(1, unbiased=False, keepdim=True) + 1e-5
    ).sqrt()
    torch.testing.assert_close(embeds, expected)


def test_layernorm_then_normalize_gives_unit_rows() -> None:
    model = architectures.build(make_opt("c2f2_normalize_layernorm")).eval()
    with torch.no_grad():
        embeds = model(images_for("c2f2"))["embeds"]
    torch.testing.assert_close(embeds.norm(dim=1), torch.ones(2))


def test_new_suffixes_keep_the_state_dict() -> None:
    plain = architectures.build(make_opt("resnet18")).state_dict()
    extended = architectures.build(make_opt("resnet18_double_layernorm")).state_dict()
    assert list(plain) == list(extended)  # so a plain checkpoint loads into either


@pytest.mark.parametrize("order", list(itertools.permutations(architectures.SUFFIXES)))
def test_every_order_of_the_suffixes_resolves(order: tuple[str, ...]) -> None:
    assert parse_arch("_".join(("resnet50", *order))) == ArchName(
        "resnet50", True, True, True, True
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet50_frozen_layernorm_double", ArchName("resnet50", True, False, True, True)),
        ("resnet50_layernorm_double", ArchName("resnet50", double=True, layernorm=True)),
        ("bninception_double", ArchName("bninception", double=True)),
        ("c2f2_layernorm", ArchName("c2f2", layernorm=True)),
        ("googlenet", ArchName("googlenet")),
    ],
)  # fmt: skip
def test_dada_names_resolve(name: str, expected: ArchName) -> None:
    assert parse_arch(name) == expected


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("resnet50_double_double", "resnet50_double"),
        ("resnet50_layernorm_frozen_layernorm", "resnet50_layernorm_frozen"),
        ("resnet50_layernrm_double", "resnet50_layernorm_double"),
        ("resnet50_double_gem", None),
        ("resnet50_doubl", "resnet50_double"),
    ],
)
def test_duplicate_and_unknown_suffixes_fail(name: str, closest: str | None) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_arch(name)
    message = str(caught.value)
    assert message.startswith("--arch") and "did you mean" in message
    assert "_double" in message and "_layernorm" in message
    if closest is not None:
        assert f"did you mean {closest!r}" in message


# The IDML uncertainty head.


def test_idml_flags_parse_with_their_defaults_and_choices() -> None:
    opt = parameters.build_parser().parse_args([])
    assert opt.idml is False and opt.idml_uncertainty_activation == "none"
    opt = parameters.build_parser().parse_args(["--idml", "--idml_uncertainty_activation", "relu"])
    assert opt.idml and opt.idml_uncertainty_activation == "relu"
    with pytest.raises(SystemExit):
        parameters.build_parser().parse_args(["--idml_uncertainty_activation", "tanh"])


def test_idml_head_output_and_gradient() -> None:
    """(The pooling backbones' heads are checked with `_double` above.)"""
    torch.manual_seed(0)
    model = architectures.build(make_opt("c2f2_normalize", idml=True))
    head = model.uncertainty_head
    assert isinstance(head, nn.Linear)
    assert (head.in_features, head.out_features) == (1024, EMBED_DIM)
    out = model(images_for("c2f2"))
    assert set(out) == {"embeds", "features", "uncertainty"}
    assert out["uncertainty"].shape == (2, EMBED_DIM)
    torch.testing.assert_close(out["uncertainty"], head(out["features"]))
    assert not torch.allclose(out["uncertainty"].norm(dim=1), torch.ones(2))  # not normalised
    out["uncertainty"].pow(2).sum().backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    assert model.last_linear.weight.grad is None  # the loss read the uncertainty only


def test_relu_activation_gives_nonnegative_uncertainty() -> None:
    model = architectures.build(make_opt("c2f2", idml=True, idml_uncertainty_activation="relu"))
    with torch.no_grad():
        model.uncertainty_head.bias.fill_(-0.05)
        out = model(images_for("c2f2", batch=4))
        raw = model.uncertainty_head(out["features"])
    assert (raw < 0).any()
    torch.testing.assert_close(out["uncertainty"], raw.clamp(min=0))


def test_no_head_without_idml_and_the_rest_unchanged() -> None:
    torch.manual_seed(3)
    plain = architectures.build(make_opt("c2f2_normalize"))
    torch.manual_seed(3)
    old_options = architectures.build(make_opt("c2f2_normalize", idml=False))
    torch.manual_seed(3)
    with_head = architectures.build(make_opt("c2f2_normalize", idml=True))
    assert plain.uncertainty_head is None and old_options.uncertainty_head is None
    assert set(plain(images_for("c2f2"))) == {"embeds", "features"}
    extra = set(with_head.state_dict()) - set(plain.state_dict())
    assert extra == {"uncertainty_head.weight", "uncertainty_head.bias"}
    for key, value in plain.state_dict().items():  # the head is created last
        torch.testing.assert_close(with_head.state_dict()[key], value, rtol=0, atol=0)


# eval.py: the checkpoint of an --idml run, its uncertainty embeddings, and old checkpoints.


@pytest.fixture(scope="module")
def idml_checkpoint(tmp_path_factory) -> str:
    """One epoch on the digits with the uncertainty head (Proxy-Anchor, as IDML)."""
    root = tmp_path_factory.mktemp("idml")
    main.train([
        "--num_workers", "0", "--savename", "run", "--save_path", str(root), "--n_epochs", "1",
        "--idml", "--loss", "proxy_anchor", "--embed_dim", "16", "--no_train_metrics",
        "--evaluation_metrics", "e_recall@1",
    ])  # fmt: skip
    return str(root / "digits" / "run" / "checkpoint_last.pth")


def test_eval_saves_uncertainty_embeddings_of_an_idml_checkpoint(idml_checkpoint, tmp_path):
    payload = load_checkpoint(idml_checkpoint, "--test_path")
    assert payload["options"]["idml"] is True and "uncertainty_head.weight" in payload["model"]
    saved, first, second = tmp_path / "E.npz", tmp_path / "A.json", tmp_path / "B.json"
    flags = ["--evaluation_metrics", "e_recall@1"]
    command = ["--test_path", idml_checkpoint, "--save_embeddings", str(saved), *flags]
    assert eval_cli.main([*command, "--output", str(first)]) == 0
    with np.load(saved) as arrays:
        assert set(arrays.files) == {"embeddings", "labels", "uncertainty"}
        assert arrays["uncertainty"].shape == (596, 16) == arrays["embeddings"].shape
        assert not np.allclose(arrays["uncertainty"], arrays["embeddings"])
    content = read_embeddings(str(saved))
    assert content.uncertainty is not None and content.uncertainty.shape == (596, 16)
    # The metrics read the semantic embeddings only, from the checkpoint or from the file.
    assert eval_cli.main(["--embeddings", str(saved), "--output", str(second), *flags]) == 0
    assert first.read_text() == second.read_text()


def test_checkpoint_without_idml_options_still_loads(idml_checkpoint, tmp_path):
    """A checkpoint written before --idml existed: options without it, no head weights."""
    payload = load_checkpoint(idml_checkpoint, "--test_path")
    for key in ("idml", "idml_uncertainty_activation"):
        del payload["options"][key]
    payload["model"] = {k: v for k, v in payload["model"].items() if "uncertainty" not in k}
    old = tmp_path / "old.pth"
    save_checkpoint(old, payload.pop("kind"), **payload)
    saved = tmp_path / "E.npz"
    assert eval_cli.main(["--test_path", str(old), "--save_embeddings", str(saved)]) == 0
    with np.load(saved) as arrays:
        assert "uncertainty" not in arrays.files
    assert read_embeddings(str(saved)).uncertainty is None


@pytest.mark.parametrize(
    ("uncertainty", "found"),
    [
        (np.zeros((5, 3), np.float32), "shape (5, 3) for 4 embeddings"),
        (np.zeros(4, np.float32), "shape (4,)"),
        (np.full((4, 3), np.nan, np.float32), "NaN or infinite 'uncertainty'"),
        (np.zeros((4, 3), np.complex64), "'uncertainty' of dtype complex64"),
    ],
)
def test_reader_validates_the_uncertainty_rows(tmp_path, uncertainty, found) -> None:
    path = tmp_path / "E.npz"
    arrays = {"embeddings": np.eye(4, 3, dtype=np.float32), "labels": np.arange(4)}
    write_embeddings(path, {**arrays, "uncertainty": uncertainty})
    with pytest.raises(ConfigError) as caught:
        read_embeddings(str(path))
    assert str(caught.value).startswith("--embeddings") and found in str(caught.value)
