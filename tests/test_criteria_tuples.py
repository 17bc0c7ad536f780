"""Tuple losses (npair, angular, lifted, quadruplet): agreement with naive per-tuple loops in
float64, gradients checked numerically, reference-behaviour flags, and which miners each loss
accepts."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

import criteria
import parameters
from batch_mining import MINERS
from batch_mining.base import BatchMiner
from criteria import CRITERIA
from criteria.base import Criterion
from utilities.errors import ConfigError

TUPLE_LOSSES = ("angular", "lifted", "npair", "quadruplet")
SET_MINERS = ("lifted", "npair")
N_CLASSES = 5
DIM = 6


def make_opt(**overrides: object) -> argparse.Namespace:
    opt = parameters.build_parser().parse_args(["--embed_dim", str(DIM)])
    opt.n_classes = N_CLASSES
    for name, value in overrides.items():
        setattr(opt, name, value)
    return opt


def build(key: str, miner: str | None = None, **overrides: object) -> Criterion:
    miner = miner or ("npair" if key in ("angular", "npair") else "lifted")
    if key == "quadruplet" and miner in SET_MINERS:
        miner = "distance"
    return criteria.build(make_opt(loss=key, batch_mining=miner, **overrides))


def make_batch(
    labels: list[int], seed: int = 0, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(len(labels), DIM, generator=generator, dtype=torch.float64) * scale
    return embeds.requires_grad_(True), torch.tensor(labels)


LABELS = [0, 0, 1, 1, 1, 2, 2, 3, 3, 4]  # classes of 2 and 3 samples


class FixedMiner(BatchMiner):
    """Returns what it was given, so the loss and the naive loop see the same tuples."""

    def __init__(self, mined: torch.Tensor, output: str) -> None:
        self.mined = mined
        self.output = output

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.mined


def freeze_miner(crit: Criterion, embeds: torch.Tensor, labels: torch.Tensor) -> list:
    torch.manual_seed(0)
    mined = crit.miner(embeds, labels)
    crit.miner = FixedMiner(mined, crit.miner.output)
    return mined.tolist()


# --- naive references: plain Python floats, one tuple at a time --------------------------------


def dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v, strict=True))


def norm(u: list[float]) -> float:
    return math.sqrt(dot(u, u))


def unit(u: list[float]) -> list[float]:
    return [a / norm(u) for a in u]


def dist(u: list[float], v: list[float]) -> float:
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v, strict=True)) + 1e-8)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def sets(row: list[int]) -> tuple[int, list[int], list[int]]:
    """(anchor, positive set, negative set) of one ``anchor_positive_negative_sets`` row."""
    roles = row[1:]
    positives = [j for j, role in enumerate(roles) if role == 1]
    negatives = [j for j, role in enumerate(roles) if role == -1]
    return row[0], positives, negatives


def naive_npair(crit: Criterion, x: torch.Tensor, y: torch.Tensor, mined: list) -> float:
    rows = [[v * crit.embed_scale for v in r] for r in x.tolist()]
    terms = []
    for row in mined:
        a, positives, negatives = sets(row)
        for p in positives:
            inner = sum(math.exp(dot(rows[a], rows[n]) - dot(rows[a], rows[p])) for n in negatives)
            terms.append(math.log(1 + inner))
    return mean(terms) + crit.l2_weight * mean([norm(r) for r in rows])


def naive_angular(crit: Criterion, x: torch.Tensor, y: torch.Tensor, mined: list) -> float:
    rows = x.tolist()
    t2 = math.tan(crit.alpha * math.pi / 180) ** 2
    npair_terms, angular_terms = [], []
    for row in mined:
        a, positives, negatives = sets(row)
        for p in positives:
            inner = 0.0
            for n in negatives:
                logit = dot(rows[a], rows[n]) - dot(rows[a], rows[p])
                inner += math.exp(min(max(logit, -50.0), 50.0))
            npair_terms.append(math.log(1 + inner))
            xa, xp = unit(rows[a]), unit(rows[p])
            inner = 0.0
            for n in negatives:
                xn = unit(rows[n])
                f = 4 * t2 * dot([u + v for u, v in zip(xa, xp, strict=True)], xn)
                inner += math.exp(f - 2 * (1 + t2) * dot(xa, xp))
            angular_terms.append(math.log(1 + inner))
    loss = mean(npair_terms) + crit.angular_weight * mean(angular_terms)
    return loss + crit.l2_weight * mean([norm(r) for r in rows])


def naive_lifted(crit: Criterion, x: torch.Tensor, y: torch.Tensor, mined: list) -> float:
    rows = x.tolist()
    terms = []
    for row in mined:
        a, positives, negatives = sets(row)
        pull = math.log(sum(math.exp(dist(rows[a], rows[p])) for p in positives))
        push = math.log(sum(math.exp(crit.margin - dist(rows[a], rows[n])) for n in negatives))
        terms.append(max(0.0, pull + push))
    return mean(terms) + crit.l2_weight * mean([norm(r) for r in rows])


def naive_quadruplet(
    crit: Criterion,
    x: torch.Tensor,
    y: torch.Tensor,
    mined: list,
    fourth: Callable[[int, int, int], list[int]] | None = None,
) -> float:
    """``fourth(t, a, n)`` lists the fourth samples of triplet t; by default every sample of a
    class other than the anchor's and the negative's."""
    rows, classes = x.tolist(), y.tolist()
    if fourth is None:

        def fourth(t: int, a: int, n: int) -> list[int]:
            return [k for k in range(len(rows)) if classes[k] not in (classes[a], classes[n])]

    triplet_terms, quadruplet_terms = [], []
    for t, (a, p, n) in enumerate(mined):
        d_ap = dist(rows[a], rows[p])
        triplet_terms.append(max(0.0, d_ap - dist(rows[a], rows[n]) + crit.alpha_1))
        others = fourth(t, a, n)
        if others:
            hinges = [max(0.0, d_ap - dist(rows[n], rows[k]) + crit.alpha_2) for k in others]
            quadruplet_terms.append(mean(hinges))
    return mean(triplet_terms) + (mean(quadruplet_terms) if quadruplet_terms else 0.0)


NAIVE: dict[str, Callable[[Criterion, torch.Tensor, torch.Tensor, list | None], float]] = {
    "angular": naive_angular,
    "lifted": naive_lifted,
    "npair": naive_npair,
    "quadruplet": naive_quadruplet,
}

CASES = [
    ("npair", "npair", {}),
    ("npair", "lifted", {}),  # several positives per anchor: one term per (a, p) pair
    ("npair", "npair", {"arch": "bninception_normalize"}),  # embeddings / 4
    ("npair", "npair", {"loss_npair_l2": 0.3}),
    ("npair", "npair", {"miner_npair_one_pair_per_class": True}),
    ("angular", "npair", {}),
    ("angular", "lifted", {}),
    ("angular", "npair", {"miner_npair_one_pair_per_class": True}),
    ("angular", "npair", {"loss_angular_alpha": 36.0, "loss_angular_npair_ang_weight": 0.5}),
    ("lifted", "lifted", {}),
    ("lifted", "npair", {}),
    ("lifted", "lifted", {"loss_lifted_neg_margin": 2.5, "loss_lifted_l2": 0.1}),
    ("quadruplet", "distance", {}),
    ("quadruplet", "random", {}),
    ("quadruplet", "softhard", {"loss_quadruplet_margin_alpha_1": 0.5}),
    ("quadruplet", "semihard", {"loss_quadruplet_margin_alpha_2": 1.5}),
]


@pytest.mark.parametrize(("key", "miner", "overrides"), CASES)
@pytest.mark.parametrize("scale", [0.7, 2.0])
def test_matches_naive_loop(key: str, miner: str, overrides: dict, scale: float) -> None:
    embeds, labels = make_batch(LABELS, seed=1, scale=scale)
    crit = build(key, miner, **overrides)
    mined = freeze_miner(crit, torch.nn.functional.normalize(embeds.detach(), dim=1), labels)
    expected = NAIVE[key](crit, embeds.detach(), labels, mined)
    loss = crit(embeds, labels)
    assert loss.dtype == torch.float64 and expected > 0
    assert loss.item() == pytest.approx(expected, abs=1e-5, rel=1e-9)


def test_angular_npair_logits_clamped_at_50() -> None:
    embeds, labels = make_batch(LABELS, seed=2, scale=6.0)  # |x_aᵀx_n − x_aᵀx_p| beyond 50
    crit = build("angular")
    mined = freeze_miner(crit, embeds.detach(), labels)
    x = embeds.detach()
    logits = [
        abs(x[a] @ x[n] - x[a] @ x[p]).item()
        for a, positives, negatives in map(sets, mined)
        for p in positives
        for n in negatives
    ]
    assert max(logits) > 50
    assert crit(embeds, labels).item() == pytest.approx(naive_angular(crit, x, labels, mined))


@pytest.mark.parametrize("key", TUPLE_LOSSES)
def test_gradients_match_finite_differences(key: str) -> None:
    embeds, labels = make_batch(LABELS, seed=3)
    crit = build(key)
    freeze_miner(crit, embeds.detach(), labels)
    assert torch.autograd.gradcheck(lambda x: crit(x, labels), (embeds,))


@pytest.mark.parametrize("key", TUPLE_LOSSES)
def test_float32_close_to_float64(key: str) -> None:
    embeds, labels = make_batch(LABELS, seed=4)
    crit = build(key)
    freeze_miner(crit, embeds.detach(), labels)
    exact = crit(embeds, labels)
    single = crit(embeds.detach().float().requires_grad_(True), labels)
    assert single.dtype == torch.float32
    assert single.item() == pytest.approx(exact.item(), rel=1e-5, abs=1e-5)


def test_npair_bninception_divides_embeddings_by_4() -> None:
    embeds, labels = make_batch(LABELS, seed=5)
    plain = build("npair")
    scaled = build("npair", arch="bninception_frozen")
    assert plain.embed_scale == 1.0 and scaled.embed_scale == 0.25
    freeze_miner(plain, embeds.detach(), labels)
    scaled.miner = plain.miner
    assert scaled(embeds, labels).item() == pytest.approx(plain(embeds / 4, labels).item())


def test_l2_penalty_is_over_the_whole_batch() -> None:
    embeds, labels = make_batch(LABELS, seed=6)
    for key, flag in (
        ("npair", "loss_npair_l2"),
        ("angular", "loss_angular_npair_l2"),
        ("lifted", "loss_lifted_l2"),
    ):
        without = build(key, **{flag: 0.0})
        freeze_miner(without, embeds.detach(), labels)
        with_l2 = build(key, **{flag: 0.5})
        with_l2.miner = without.miner
        difference = with_l2(embeds, labels) - without(embeds, labels)
        assert difference.item() == pytest.approx(0.5 * embeds.norm(dim=1).mean().item())


def test_quadruplet_fourth_sample_is_of_a_third_class() -> None:
    labels = torch.tensor(LABELS)
    crit = build("quadruplet")
    mined = torch.tensor([[0, 1, 2], [2, 3, 7], [5, 6, 9]])
    fourth = crit.fourth_candidates(mined, labels)
    for (a, _, n), row in zip(mined.tolist(), fourth.tolist(), strict=True):
        expected = [k for k in range(len(LABELS)) if LABELS[k] not in (LABELS[a], LABELS[n])]
        assert [k for k, keep in enumerate(row) if keep] == expected


def test_quadruplet_two_classes_has_only_the_triplet_term() -> None:
    embeds, labels = make_batch([0, 0, 0, 1, 1, 1], seed=7)
    crit = build("quadruplet")
    mined = freeze_miner(crit, embeds.detach(), labels)
    assert not crit.fourth_candidates(torch.tensor(mined), labels).any()
    crit_alpha2 = build("quadruplet", loss_quadruplet_margin_alpha_2=5.0)
    crit_alpha2.miner = crit.miner
    expected = naive_quadruplet(crit, embeds.detach(), labels, mined)
    assert crit(embeds, labels).item() == pytest.approx(expected)
    assert crit_alpha2(embeds, labels).item() == pytest.approx(expected)


def test_quadruplet_reference_fourth_rule() -> None:
    """Reference: one random batch index j < #triplets whose triplet has another negative."""
    labels = torch.tensor(LABELS)
    crit = build("quadruplet", loss_quadruplet_reference_fourth=True)
    mined = torch.tensor([[0, 1, 2], [1, 0, 2], [2, 3, 7], [5, 6, 9]])
    seen = set()
    torch.manual_seed(0)
    for _ in range(200):
        fourth = crit.fourth_candidates(mined, labels)
        assert (fourth.sum(1) == 1).all()
        for t, j in fourth.nonzero().tolist():
            assert j < len(mined) and mined[j, 2] != mined[t, 2]
            seen.add((t, j))
    # triplets 0 and 1 share negative 2: each may pick 2 or 3; 2 and 3 pick any other triplet
    assert seen == {(0, 2), (0, 3), (1, 2), (1, 3), (2, 0), (2, 1), (2, 3), (3, 0), (3, 1), (3, 2)}
    same_negative = torch.tensor([[0, 1, 2], [1, 0, 2]])
    assert not crit.fourth_candidates(same_negative, labels).any()


def reference_quadruplet(x: np.ndarray, mined: np.ndarray, fourth: list[int], a1: float,
                         a2: float) -> float:  # fmt: skip
    """The reference's arithmetic, shapes included: its index arrays are T×1, so
    ``batch[negatives,:] - batch[fourth_negatives,:]`` broadcasts T×1×D against T×D."""
    anchors, positives, negatives = (mined[:, i].reshape(-1, 1) for i in range(3))
    d_ap = np.linalg.norm(x[anchors] - x[positives], axis=-1)  # T×1
    d_an = np.linalg.norm(x[anchors] - x[negatives], axis=-1)  # T×1
    d_nk = np.linalg.norm(x[negatives] - x[fourth], axis=-1)  # T×T
    triplet = np.maximum(d_ap - d_an + a1, 0).mean()
    return float(triplet + np.maximum(d_ap - d_nk + a2, 0).mean())


def test_quadruplet_reference_fourth_broadcasts_as_the_reference() -> None:
    """Hand-made: 4 triplets in 2-D, each triplet's fourth sample fixed."""
    x = np.array([[0.0, 0.0], [0.3, 0.1], [1.0, 0.0], [0.0, 0.9], [0.2, 0.5], [0.7, 0.7]])
    labels = torch.tensor([0, 0, 1, 2, 0, 3])
    mined = np.array([[0, 1, 2], [1, 0, 3], [4, 0, 5], [0, 4, 3]])
    fourth = [1, 0, 2, 0]  # j_s < T with another negative than triplet s
    crit = build("quadruplet", loss_quadruplet_reference_fourth=True)
    chosen = torch.zeros(4, 6, dtype=torch.bool)
    chosen[torch.arange(4), torch.tensor(fourth)] = True
    crit.fourth_candidates = lambda mined, labels: chosen
    embeds = torch.tensor(x, dtype=torch.float64)
    value = crit(embeds, labels, mined=torch.tensor(mined)).item()
    expected = reference_quadruplet(x, mined, fourth, crit.alpha_1, crit.alpha_2)
    assert value == pytest.approx(expected, abs=5e-5)  # ours: sqrt(d² + 1e-8), the reference d
    per_triplet = naive_quadruplet(crit, embeds, labels, mined.tolist(),
                                   lambda t, a, n: [fourth[t]])  # fmt: skip
    assert abs(per_triplet - expected) > 1e-2  # the per-triplet mean is not the reference


def test_quadruplet_reference_fourth_matches_the_reference_on_a_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    embeds, labels = make_batch(LABELS, seed=8)
    crit = build("quadruplet", loss_quadruplet_reference_fourth=True)
    mined = freeze_miner(crit, embeds.detach(), labels)
    torch.manual_seed(1)
    fourth = crit.fourth_candidates(torch.tensor(mined), labels)
    monkeypatch.setattr(crit, "fourth_candidates", lambda mined, labels: fourth)
    chosen = fourth.int().argmax(1).tolist()
    assert fourth.any(1).all()
    expected = reference_quadruplet(embeds.detach().double().numpy(), np.array(mined), chosen,
                                    crit.alpha_1, crit.alpha_2)  # fmt: skip
    assert crit(embeds, labels).item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("key", TUPLE_LOSSES)
def test_nothing_mined_is_zero_with_gradient(key: str) -> None:
    embeds, labels = make_batch([0, 1, 2, 3], seed=9)
    loss = build(key)(embeds, labels)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(embeds.grad, torch.zeros_like(embeds))


def test_allowed_miners_are_the_real_keys() -> None:
    set_losses = ("angular", "lifted", "npair")
    for key in set_losses:
        assert set(CRITERIA.get(key).allowed_miners) == set(SET_MINERS)
    triplet_miners = {key for key, miner in MINERS.items() if miner.output == "triplets"}
    assert set(CRITERIA.get("quadruplet").allowed_miners) == triplet_miners
    assert not set(SET_MINERS) & set(CRITERIA.get("triplet").allowed_miners)
    with pytest.raises(ConfigError, match="cannot be used with --loss npair"):
        criteria.build(make_opt(loss="npair", batch_mining="distance"))
    with pytest.raises(ConfigError, match="cannot be used with --loss quadruplet"):
        criteria.build(make_opt(loss="quadruplet", batch_mining="lifted"))


@pytest.mark.parametrize("key", TUPLE_LOSSES)
def test_no_parameters(key: str) -> None:
    crit = build(key)
    assert crit.param_groups() == [] and list(crit.parameters()) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("key", TUPLE_LOSSES)
def test_runs_on_the_embeddings_device(key: str) -> None:
    embeds, labels = make_batch(LABELS, seed=10)
    on_device = embeds.detach().to("cuda").requires_grad_(True)
    crit = build(key)
    mined = crit.miner(on_device, labels)
    assert mined.device == on_device.device
    loss = crit(on_device, labels)
    loss.backward()
    assert loss.device == on_device.device and torch.isfinite(on_device.grad).all()
    mined = freeze_miner(crit, embeds.detach(), labels)
    expected = crit(embeds, labels).item()
    crit.miner = FixedMiner(torch.tensor(mined, device="cuda"), crit.miner.output)
    assert crit(on_device, labels).item() == pytest.approx(expected, abs=1e-10)
