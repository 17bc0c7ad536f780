"""Losses: finite values, gradients, agreement with naive per-triplet loops, edge cases."""

from __future__ import annotations

import argparse
import importlib
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import criteria
import parameters
from batch_mining import MINERS
from batch_mining.base import BatchMiner
from criteria import CRITERIA
from criteria.base import Criterion
from utilities.errors import ConfigError

N_CLASSES = 6
EMBED_DIM = 8


def make_opt(**overrides: object) -> argparse.Namespace:
    """Every flag at its parser default, ``n_classes`` set, then ``overrides``."""
    opt = parameters.build_parser().parse_args(["--embed_dim", str(EMBED_DIM)])
    opt.n_classes = N_CLASSES
    for name, value in overrides.items():
        setattr(opt, name, value)
    return opt


def build(key: str, **overrides: object) -> Criterion:
    miners = CRITERIA.get(key).allowed_miners
    miner = "distance" if "distance" in miners else (miners[0] if miners else "random")
    return criteria.build(make_opt(loss=key, batch_mining=miner, **overrides))


def make_batch(
    per_class: int = 3, dim: int = EMBED_DIM, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(N_CLASSES).repeat_interleave(per_class)
    embeds = torch.nn.functional.normalize(
        torch.randn(len(labels), dim, generator=generator), dim=1
    )
    return embeds.requires_grad_(True), labels


class FixedMiner(BatchMiner):
    """Returns the triplets it was given, so loss and reference see the same ones."""

    def __init__(self, mined: torch.Tensor) -> None:
        self.mined = mined

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.mined


def dist(u: torch.Tensor, v: torch.Tensor) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(u.tolist(), v.tolist(), strict=False)) + 1e-8)


def sqdist(u: torch.Tensor, v: torch.Tensor) -> float:
    return sum((x - y) ** 2 for x, y in zip(u.tolist(), v.tolist(), strict=False))


def naive_triplet(crit: Criterion, x: torch.Tensor, y: torch.Tensor, mined: list) -> float:
    terms = [max(0.0, sqdist(x[a], x[p]) - sqdist(x[a], x[n]) + crit.margin) for a, p, n in mined]
    return sum(terms) / len(terms)


def naive_contrastive(crit: Criterion, x: torch.Tensor, y: torch.Tensor, mined: list) -> float:
    pull = [max(0.0, dist(x[a], x[p]) - crit.pos_margin) for a, p, _ in mined]
    push = [max(0.0, crit.neg_margin - dist(x[a], x[n])) for a, _, n in mined]
    return sum(pull) / len(pull) + sum(push) / len(push)


def naive_margin(crit: Criterion, x: torch.Tensor, y: torch.Tensor, mined: list) -> float:
    total, active, betas = 0.0, 0, []
    for a, _, _ in mined:
        betas.append(crit.beta if isinstance(crit.beta, float) else crit.beta[y[a]].item())
    for (a, p, n), beta in zip(mined, betas, strict=False):
        for term in (dist(x[a], x[p]) - beta + crit.margin, beta - dist(x[a], x[n]) + crit.margin):
            if term > 0:
                total += term
                active += 1
    return total / max(active, 1) + crit.nu * sum(betas) / len(betas)


NAIVE: dict[str, Callable[[Criterion, torch.Tensor, torch.Tensor, list | None], float]] = {
    "triplet": naive_triplet,
    "contrastive": naive_contrastive,
    "margin": naive_margin,
}


@pytest.mark.parametrize("key", CRITERIA.keys())
def test_finite_and_gradients_reach_embeddings(key: str) -> None:
    embeds, labels = make_batch()
    torch.manual_seed(0)
    loss = build(key)(embeds * 3, labels)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert embeds.grad is not None and torch.isfinite(embeds.grad).all()
    assert embeds.grad.abs().sum() > 0


MINED_LOSSES = [key for key, loss in CRITERIA.items() if loss.requires_batchminer]
VARIANTS = [(key, {}) for key in MINED_LOSSES] + [
    ("margin", {"loss_margin_nu": 0.3}),
    ("margin", {"loss_margin_beta_constant": True}),
]


def test_every_loss_has_a_naive_reference() -> None:
    """Every registered loss is checked against a naive loop: the ``NAIVE`` dict of this module
    or of another ``tests/test_criteria_*.py`` module (e.g. the proxy losses')."""
    covered = set(NAIVE)
    for path in Path(__file__).parent.glob("test_criteria_*.py"):
        covered |= set(importlib.import_module(path.stem).NAIVE)
    missing = set(CRITERIA.keys()) - covered
    assert not missing, f"add a naive reference implementation of {sorted(missing)}"


@pytest.mark.parametrize(("key", "overrides"), VARIANTS)
def test_matches_naive_loop(key: str, overrides: dict) -> None:
    assert key in NAIVE, f"add a naive reference implementation of loss {key!r} to NAIVE"
    embeds, labels = make_batch(per_class=3, dim=6, seed=1)
    crit = build(key, **overrides)
    mined = None
    if crit.requires_batchminer:
        torch.manual_seed(0)
        mined = crit.miner(embeds, labels)
        crit.miner = FixedMiner(mined)
        mined = mined.tolist()
    scaled = embeds * 1.3
    expected = NAIVE[key](crit, scaled.detach().double(), labels, mined)
    assert expected > 0
    assert crit(scaled, labels).item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("key", CRITERIA.keys())
@pytest.mark.parametrize(
    "labels",
    [[2, 2, 2, 2], [0, 1, 2, 3], [0, 1], [4, 4]],
    ids=["one-class", "no-triplet", "bs2-two-classes", "bs2-one-class"],
)
def test_edge_batches_do_not_crash(key: str, labels: list[int]) -> None:
    embeds = torch.randn(len(labels), 8, requires_grad=True)
    loss = build(key)(embeds, torch.tensor(labels))
    assert torch.isfinite(loss)
    loss.backward()
    assert embeds.grad is not None and torch.isfinite(embeds.grad).all()
    if CRITERIA.get(key).requires_batchminer:
        assert loss.item() == 0.0


@pytest.mark.parametrize("key", CRITERIA.keys())
def test_duplicate_samples_have_finite_gradients(key: str) -> None:
    base = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    embeds = base[[0, 0, 1, 1, 2, 2]].clone().requires_grad_(True)
    build(key)(embeds, torch.tensor([0, 0, 1, 1, 2, 2])).backward()
    assert torch.isfinite(embeds.grad).all()


def test_margin_param_groups() -> None:
    crit = build("margin", loss_margin_beta_lr=1e-3)
    (group,) = crit.param_groups()
    assert group["lr"] == 1e-3 and group["weight_decay"] == 0.0
    assert group["params"][0] is crit.beta and crit.beta.shape == (N_CLASSES,)
    assert torch.allclose(crit.beta, torch.full((N_CLASSES,), 1.2))
    constant = build("margin", loss_margin_beta_constant=True)
    assert constant.param_groups() == [] and list(constant.parameters()) == []
    assert build("triplet").param_groups() == []


def test_margin_nu_regulariser_gradient_on_beta() -> None:
    embeds, labels = make_batch(seed=2)
    torch.manual_seed(0)
    mined = build("margin").miner(embeds, labels)
    grads = {}
    for nu in (0.0, 0.5):
        crit = build("margin", loss_margin_nu=nu)
        crit.miner = FixedMiner(mined)
        crit(embeds, labels).backward()
        grads[nu] = crit.beta.grad.clone()
    counts = torch.bincount(labels[mined[:, 0]], minlength=N_CLASSES).float()
    assert torch.allclose(grads[0.5] - grads[0.0], 0.5 * counts / len(mined), atol=1e-6)


def test_margin_beta_indexed_by_anchor_class() -> None:
    embeds, labels = make_batch(seed=3)
    crit = build("margin")
    crit.miner = FixedMiner(torch.tensor([[0, 1, 3], [3, 4, 0]]))
    crit(embeds, labels).backward()
    touched = crit.beta.grad.nonzero().squeeze(1).tolist()
    assert set(touched) <= {0, 1}


class TupleMiner(BatchMiner):
    output = "anchor_positive_negative_sets"
    registry_key = "npair"


def test_incompatible_miner_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MINERS._entries, "npair", TupleMiner)
    assert "npair" not in CRITERIA.get("triplet").allowed_miners
    with pytest.raises(ConfigError) as error:
        criteria.build(make_opt(loss="triplet", batch_mining="npair"))
    assert str(error.value) == (
        "--batch_mining: miner 'npair' cannot be used with --loss triplet; "
        "allowed: distance, random, semihard, softhard"
    )


def test_unknown_keys_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="--loss"):
        criteria.build(make_opt(loss="tripletz"))
    with pytest.raises(ConfigError, match="--batch_mining"):
        criteria.build(make_opt(loss="margin", batch_mining="distanse"))


@pytest.mark.parametrize("key", CRITERIA.keys())
def test_every_allowed_miner_works(key: str) -> None:
    embeds, labels = make_batch()
    for miner in CRITERIA.get(key).allowed_miners:
        loss = criteria.build(make_opt(loss=key, batch_mining=miner))(embeds, labels)
        assert torch.isfinite(loss)


def test_semihard_uses_loss_margin() -> None:
    crit = criteria.build(
        make_opt(loss="triplet", batch_mining="semihard", loss_triplet_margin=0.4)
    )
    assert crit.miner.margin == 0.4
    crit = criteria.build(make_opt(loss="contrastive", batch_mining="semihard"))
    assert crit.miner.margin == 0.2
