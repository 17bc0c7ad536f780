"""Tests of `architectures/`: suffix parsing, shapes, frozen BatchNorm, input normalisation and
pretrained-weight loading (from fake ImageNet checkpoints; nothing is downloaded)."""

from __future__ import annotations

import argparse
import os

import pytest
import torch
import torchvision
from torch import nn

import architectures
from architectures import ARCHITECTURES, ArchName, parse_arch
from architectures.base import BATCH_NORMS
from utilities.errors import ConfigError

EMBED_DIM = 16
SUFFIX_SETS = ("", "_frozen", "_normalize", "_frozen_normalize")


def make_opt(arch: str, **overrides) -> argparse.Namespace:
    flags = {"arch": arch, "embed_dim": EMBED_DIM, "not_pretrained": True, "pretrained_path": None}
    flags.update(overrides)
    return argparse.Namespace(**flags)


def random_images(arch: str, batch: int = 2) -> torch.Tensor:
    spec = architectures.input_spec(arch)
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, spec.channels, spec.size, spec.size, generator=generator)


def batch_norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, BATCH_NORMS)]


def bn_statistics(model: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for m in batch_norms(model) for t in (m.running_mean, m.running_var)]


@pytest.mark.parametrize("suffixes", SUFFIX_SETS)
@pytest.mark.parametrize("base", ARCHITECTURES.keys())
def test_every_arch_builds_and_returns_embeds_and_features(base: str, suffixes: str) -> None:
    arch = base + suffixes
    model = architectures.build(make_opt(arch))
    assert isinstance(model, architectures.EmbeddingModel)
    assert model.last_linear.out_features == EMBED_DIM
    images = random_images(arch).requires_grad_(True)
    out = model(images)
    assert set(out) == {"embeds", "features"}
    assert out["embeds"].shape == (2, EMBED_DIM)
    assert out["features"].shape == (2, model.last_linear.in_features)
    norms = out["embeds"].norm(dim=1)
    if "normalize" in suffixes:
        torch.testing.assert_close(norms, torch.ones(2))
    else:
        assert not torch.allclose(norms, torch.ones(2))
    # Attacks need gradients in pixel space.
    (out["embeds"] * torch.randn(2, EMBED_DIM)).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet50", ("resnet50", False, False)),
        ("resnet50_frozen_normalize", ("resnet50", True, True)),
        ("resnet50_normalize_frozen", ("resnet50", True, True)),
        ("bninception_normalize_frozen", ("bninception", True, True)),
        ("bninception_frozen", ("bninception", True, False)),
        ("c2f2_normalize", ("c2f2", False, True)),
    ],
)
def test_parse_arch_accepts_suffixes_in_any_order(name: str, expected: tuple) -> None:
    assert parse_arch(name) == ArchName(*expected)


@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("resnet50_frozn", "resnet50_frozen"),
        ("resnet51_normalize", "resnet50_normalize"),
        ("resnet50_frozen_frozen", "resnet50_frozen"),
        ("resnet50normalize", "resnet50_normalize"),
        ("bn_inception", "bninception"),
    ],
)
def test_bad_arch_names_raise_config_error_with_closest_key(name: str, closest: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_arch(name)
    message = str(caught.value)
    assert message.startswith("--arch")
    assert f"did you mean {closest!r}" in message
    assert "_frozen" in message and "_normalize" in message
    with pytest.raises(ConfigError):
        architectures.input_spec(name)


def test_input_specs_without_building() -> None:
    assert architectures.input_spec("resnet50_frozen_normalize").size == 224
    assert architectures.input_spec("googlenet").size == 227
    bn = architectures.input_spec("bninception_normalize")
    assert bn.bgr and bn.scale == 255 and bn.mean == (104.0, 117.0, 128.0)
    digits = architectures.input_spec("c2f2_normalize")
    assert (digits.size, digits.channels, digits.fixed_size) == (28, 1, True)


def test_frozen_keeps_bn_statistics_while_affine_parameters_learn() -> None:
    model = architectures.build(make_opt("resnet18_frozen"))
    model.eval()
    model.train()
    assert model.training and all(not m.training for m in batch_norms(model))
    before = bn_statistics(model)
    images = random_images("resnet18")
    train_out = model(images)["embeds"]
    for old, new in zip(before, bn_statistics(model), strict=False):
        torch.testing.assert_close(old, new, rtol=0, atol=0)
    train_out.pow(2).sum().backward()
    for bn in batch_norms(model):
        assert bn.weight.requires_grad and bn.weight.grad is not None
    assert any(bn.weight.grad.abs().sum() > 0 for bn in batch_norms(model))
    model.eval()
    torch.testing.assert_close(model(images)["embeds"], train_out.detach())


@pytest.mark.parametrize("base", ["resnet18", "bninception", "googlenet"])
def test_unfrozen_bn_updates_statistics_and_frozen_does_not(base: str) -> None:
    images = random_images(base)
    for suffix, changes in (("", True), ("_frozen", False)):
        model = architectures.build(make_opt(base + suffix)).train()
        assert batch_norms(model)
        before = bn_statistics(model)
        with torch.no_grad():
            model(images)
        changed = any(
            not torch.equal(a, b) for a, b in zip(before, bn_statistics(model), strict=False)
        )
        assert changed == changes, f"{base}{suffix}"


def test_missing_pretrained_weights_explain_where_to_get_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ConfigError) as caught:
        architectures.build(make_opt("resnet50_frozen_normalize", not_pretrained=False))
    message = str(caught.value)
    expected_file = os.path.join(str(tmp_path / "hub"), "checkpoints", "resnet50-0676ba61.pth")
    assert expected_file in message
    assert torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url in message
    assert "--pretrained_path" in message and "--not_pretrained" in message

    missing = str(tmp_path / "nowhere.pth")
    with pytest.raises(ConfigError, match="nowhere.pth") as caught:
        architectures.build(make_opt("bninception", not_pretrained=False, pretrained_path=missing))
    assert "bn_inception-52deb4733.pth" in str(caught.value)


@pytest.mark.parametrize(
    ("base", "weights"),
    [("resnet18", "ResNet18_Weights"), ("resnet50", "ResNet50_Weights"),
     ("googlenet", "GoogLeNet_Weights")],
)  # fmt: skip
def test_weight_urls_are_torchvisions(base, weights) -> None:
    """The literal URLs (torchvision is imported only to build a backbone) are torchvision's."""
    official = getattr(torchvision.models, weights).IMAGENET1K_V1.url
    assert ARCHITECTURES.get(base).weights_url == official


def test_c2f2_never_asks_for_pretrained_weights(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    model = architectures.build(make_opt("c2f2_normalize", not_pretrained=False))
    assert model(random_images("c2f2"))["embeds"].shape == (2, EMBED_DIM)


def official_checkpoint(base: str) -> nn.Module:
    """A freshly initialised network in the layout of the official ImageNet weight file."""
    if base == "resnet18":
        return torchvision.models.resnet18(weights=None)
    if base == "googlenet":
        return torchvision.models.GoogLeNet(aux_logits=True, init_weights=True)
    from pretrainedmodels.models.bninception import bninception

    return bninception(num_classes=1000, pretrained=None)


@pytest.mark.parametrize("base", ["resnet18", "googlenet", "bninception"])
def test_pretrained_path_loads_backbone_weights(base: str, tmp_path) -> None:
    torch.manual_seed(1)
    official = official_checkpoint(base).state_dict()
    path = tmp_path / "imagenet.pth"
    torch.save(official, path)
    torch.manual_seed(2)
    model = architectures.build(make_opt(base, not_pretrained=False, pretrained_path=str(path)))
    loaded = model.backbone.state_dict()
    assert loaded
    for key, value in loaded.items():
        torch.testing.assert_close(value, official[key], rtol=0, atol=0)
    dropped = set(official) - set(loaded)
    assert dropped and all(key.startswith(model.classifier_prefixes) for key in dropped)


def test_hub_cache_is_used_and_mismatched_checkpoint_names_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    official = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(official, tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    model = architectures.build(make_opt("resnet18", not_pretrained=False))
    torch.testing.assert_close(model.backbone.conv1.weight, official["conv1.weight"])

    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, wrong)
    with pytest.raises(ConfigError, match="wrong.pth"):
        architectures.build(make_opt("resnet18", not_pretrained=False, pretrained_path=str(wrong)))


def test_bninception_normalises_to_bgr_0_255_inside_forward() -> None:
    model = architectures.build(make_opt("bninception")).eval()
    rgb = torch.tensor([0.2, 0.5, 0.8])
    images = rgb.view(1, 3, 1, 1).expand(2, 3, 224, 224)
    bgr_255 = torch.tensor([0.8 * 255 - 104, 0.5 * 255 - 117, 0.2 * 255 - 128])
    manual = bgr_255.view(1, 3, 1, 1).expand(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(images)["features"], model.backbone(manual))


def test_imagenet_normalisation_inside_forward() -> None:
    model = architectures.build(make_opt("resnet18")).eval()
    images = random_images("resnet18")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        out = model(images)
        torch.testing.assert_close(out["features"], model.backbone((images - mean) / std))
        torch.testing.assert_close(out["embeds"], model.last_linear(out["features"]))


def test_googlenet_feeds_its_weights_what_torchvision_transform_input_would() -> None:
    model = architectures.build(make_opt("googlenet")).eval()
    reference = torchvision.models.GoogLeNet(
        aux_logits=False, transform_input=True, init_weights=False
    ).eval()
    reference.fc = nn.Identity()
    reference.load_state_dict(model.backbone.state_dict())
    images = random_images("googlenet")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference((images - mean) / std)
        torch.testing.assert_close(model(images)["features"], expected, rtol=1e-4, atol=1e-4)


def test_models_are_device_agnostic() -> None:
    model = architectures.build(make_opt("c2f2_normalize")).to("meta")
    assert all(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()])
    out = model(torch.empty(2, 1, 28, 28, device="meta"))
    assert out["embeds"].device.type == "meta" and out["embeds"].shape == (2, EMBED_DIM)
    model = architectures.build(make_opt("resnet18")).to(torch.float64)
    assert model(random_images("resnet18").double())["embeds"].dtype == torch.float64
