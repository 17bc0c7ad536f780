"""Batch miners: valid indices obeying each miner's rule, edge cases, determinism, statistics."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from scipy import stats

import batch_mining
from batch_mining import MINERS
from batch_mining.semihard import resolve_margin

TRIPLET_MINERS = [key for key, miner in MINERS.items() if miner.output == "triplets"]


def make_opt(**overrides: object) -> argparse.Namespace:
    values = {
        "batch_mining": "random",
        "loss": "triplet",
        "loss_triplet_margin": 0.2,
        "miner_semihard_margin": None,
        "miner_distance_lower_cutoff": 0.5,
        "miner_distance_upper_cutoff": 1.4,
        "miner_distance_no_upper_cutoff": False,
    }
    values.update(overrides)
    return argparse.Namespace(**values)


def make_batch(
    n_classes: int = 6, per_class: int = 3, dim: int = 16, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    embeds = torch.randn(len(labels), dim, generator=generator)
    return torch.nn.functional.normalize(embeds, dim=1), labels


def distance_matrix(embeds: torch.Tensor) -> np.ndarray:
    x = embeds.double().numpy()
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def mine(key: str, embeds: torch.Tensor, labels: torch.Tensor, **flags: object) -> torch.Tensor:
    return batch_mining.build(make_opt(batch_mining=key, **flags))(embeds, labels)


@pytest.mark.parametrize("key", TRIPLET_MINERS)
def test_triplets_are_valid(key: str) -> None:
    embeds, labels = make_batch()
    embeds.requires_grad_(True)
    torch.manual_seed(0)
    mined = mine(key, embeds, labels)
    assert mined.dtype == torch.long and mined.shape[1] == 3 and len(mined) > 0
    assert not mined.requires_grad and mined.device == embeds.device
    a, p, n = mined.T
    assert ((mined >= 0) & (mined < len(labels))).all()
    assert (a != p).all()
    assert (labels[a] == labels[p]).all()
    assert (labels[a] != labels[n]).all()


@pytest.mark.parametrize("key", TRIPLET_MINERS)
def test_deterministic_under_seed(key: str) -> None:
    embeds, labels = make_batch(n_classes=8, per_class=4)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        runs.append(mine(key, embeds, labels))
    torch.manual_seed(124)
    other = mine(key, embeds, labels)
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], other)


@pytest.mark.parametrize("key", TRIPLET_MINERS)
@pytest.mark.parametrize(
    "labels",
    [[3, 3, 3, 3], [0, 1, 2, 3], [0, 1], [5, 5], [7]],
    ids=["one-class", "no-positive", "bs2-two-classes", "bs2-one-class", "bs1"],
)
def test_nothing_to_mine_gives_empty(key: str, labels: list[int]) -> None:
    embeds = torch.nn.functional.normalize(torch.randn(len(labels), 8), dim=1)
    mined = mine(key, embeds, torch.tensor(labels))
    assert mined.shape == (0, 3) and mined.dtype == torch.long


@pytest.mark.parametrize("key", ["semihard", "softhard", "distance"])
def test_one_triplet_per_eligible_anchor(key: str) -> None:
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])  # anchor 5 has no positive
    embeds = torch.nn.functional.normalize(torch.randn(len(labels), 8), dim=1)
    mined = mine(key, embeds, labels)
    assert sorted(mined[:, 0].tolist()) == [0, 1, 2, 3, 4, 6, 7]


def all_valid_triplets(labels: torch.Tensor) -> set[tuple[int, int, int]]:
    rows = labels.tolist()
    return {
        (a, p, n)
        for a in range(len(rows))
        for p in range(len(rows))
        for n in range(len(rows))
        if a != p and rows[a] == rows[p] and rows[n] != rows[a]
    }


def test_random_returns_all_when_fewer_than_batch() -> None:
    labels = torch.tensor([0, 0, 1, 2, 3, 4])  # 2 positive pairs × 4 negatives = 8 > 6
    embeds = torch.randn(6, 4)
    mined = mine("random", embeds, labels)
    valid = all_valid_triplets(labels)
    rows = {tuple(t) for t in mined.tolist()}
    assert len(mined) == 6 and len(rows) == 6 and rows <= valid
    few = torch.tensor([0, 0, 1])  # 2 valid triplets < batch size 3: all of them, no error
    mined = mine("random", torch.randn(3, 4), few)
    assert {tuple(t) for t in mined.tolist()} == all_valid_triplets(few) and len(mined) == 2


def test_random_is_uniform_over_valid_triplets() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2])
    valid = sorted(all_valid_triplets(labels))  # 12 valid, 5 drawn per call
    counts = dict.fromkeys(valid, 0)
    torch.manual_seed(0)
    for _ in range(600):
        for triplet in mine("random", torch.randn(5, 4), labels).tolist():
            counts[tuple(triplet)] += 1
    observed = np.array(list(counts.values()))
    assert observed.sum() == 3000
    assert stats.chisquare(observed).pvalue > 1e-3


def test_semihard_picks_semihard_negatives() -> None:
    embeds, labels = make_batch(n_classes=10, per_class=4, dim=8, seed=1)
    margin = 0.3
    torch.manual_seed(0)
    mined = mine("semihard", embeds, labels, miner_semihard_margin=margin)
    dist = distance_matrix(embeds)
    checked = 0
    for a, p, n in mined.tolist():
        window = [
            j
            for j in range(len(labels))
            if labels[j] != labels[a] and dist[a, p] < dist[a, j] < dist[a, p] + margin
        ]
        if window:
            checked += 1
            assert n in window
    assert checked > len(mined) // 2


def test_semihard_margin_resolution_never_raises() -> None:
    assert resolve_margin(make_opt(miner_semihard_margin=0.7)) == 0.7
    assert resolve_margin(make_opt(loss="triplet", loss_triplet_margin=0.35)) == 0.35
    assert resolve_margin(make_opt(loss="contrastive")) == 0.2
    assert resolve_margin(argparse.Namespace()) == 0.2


def test_softhard_picks_from_hard_sets() -> None:
    embeds, labels = make_batch(n_classes=6, per_class=5, dim=4, seed=2)
    torch.manual_seed(0)
    mined = mine("softhard", embeds, labels)
    dist = distance_matrix(embeds)
    rows = labels.numpy()
    hard_pos_seen = hard_neg_seen = 0
    for a, p, n in mined.tolist():
        pos = [j for j in range(len(rows)) if rows[j] == rows[a] and j != a]
        neg = [j for j in range(len(rows)) if rows[j] != rows[a]]
        hard_pos = [j for j in pos if dist[a, j] > dist[a, neg].min()]
        hard_neg = [j for j in neg if dist[a, j] < dist[a, pos].max()]
        assert p in (hard_pos or pos)
        assert n in (hard_neg or neg)
        hard_pos_seen += bool(hard_pos)
        hard_neg_seen += bool(hard_neg)
    assert hard_pos_seen > 0 and hard_neg_seen > 0


def far_negatives_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor 0 has a positive and negatives at known distances, some beyond 1.4."""
    angles = torch.tensor([0.0, 0.3, 0.9, 1.2, 2.0, 2.6, 3.0])  # chord d = 2 sin(θ/2)
    embeds = torch.stack([angles.cos(), angles.sin(), torch.zeros_like(angles)], dim=1)
    labels = torch.tensor([0, 0, 1, 2, 3, 4, 5])
    return embeds, labels


def test_distance_upper_cutoff_applied_by_default() -> None:
    embeds, labels = far_negatives_batch()
    dist = distance_matrix(embeds)
    torch.manual_seed(0)
    drawn = torch.cat([mine("distance", embeds, labels)[:1, 2] for _ in range(300)])
    assert (dist[0, drawn.numpy()] <= 1.4).all()
    torch.manual_seed(0)
    reference = torch.cat(
        [
            mine("distance", embeds, labels, miner_distance_no_upper_cutoff=True)[:1, 2]
            for _ in range(300)
        ]
    )
    assert (dist[0, reference.numpy()] > 1.4).any()


def test_distance_cutoff_falls_back_to_uniform_negatives() -> None:
    embeds = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])  # every negative at distance 2 > 1.4
    mined = mine("distance", embeds, labels)
    assert len(mined) == 4 and (labels[mined[:, 2]] != labels[mined[:, 0]]).all()


def test_distance_high_dimension_finite() -> None:
    embeds, labels = make_batch(n_classes=20, per_class=2, dim=128, seed=3)
    embeds[1] = embeds[0]  # d = 0 (same class)
    embeds[3] = -embeds[0]  # d = 2 (antipodal negative)
    embeds[4] = embeds[0]  # d = 0 negative
    for flag in (False, True):
        mined = mine("distance", embeds, labels, miner_distance_no_upper_cutoff=flag)
        assert len(mined) == len(labels)
        assert (labels[mined[:, 2]] != labels[mined[:, 0]]).all()


def inverse_density(d: np.ndarray, dim: int, lower: float) -> np.ndarray:
    d = np.maximum(d, lower)
    return d ** (2.0 - dim) * (1.0 - d**2 / 4.0) ** (-(dim - 3) / 2.0)


@pytest.mark.parametrize("no_upper", [True, False], ids=["no-cutoff", "cutoff"])
def test_distance_negative_frequencies_follow_inverse_density(no_upper: bool) -> None:
    dim = 5
    embeds, labels = make_batch(n_classes=7, per_class=2, dim=dim, seed=4)
    dist = distance_matrix(embeds)
    draws = 1500
    torch.manual_seed(0)
    mined = torch.stack(
        [
            mine("distance", embeds, labels, miner_distance_no_upper_cutoff=no_upper)
            for _ in range(draws)
        ]
    )
    for anchor in range(len(labels)):
        negatives = np.flatnonzero(labels.numpy() != labels[anchor].item())
        weights = inverse_density(dist[anchor, negatives], dim, 0.5)
        if not no_upper:
            weights = np.where(dist[anchor, negatives] <= 1.4, weights, 0.0)
        expected = weights / weights.sum()
        drawn = mined[:, anchor, 2].numpy()
        observed = np.array([(drawn == n).sum() for n in negatives])
        assert observed[expected == 0].sum() == 0
        support = expected > 0
        if support.sum() > 1:
            result = stats.chisquare(observed[support], expected[support] * draws)
            assert result.pvalue > 1e-4, (anchor, observed, expected * draws)
        assert 0.5 * np.abs(observed / draws - expected).sum() < 0.05
