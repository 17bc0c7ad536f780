"""Batch miners: valid indices obeying each miner's rule, edge cases, determinism, statistics."""

from __future__ import annotations

import argparse
import functools

import numpy as np
import pytest
import torch
from scipy import stats

import batch_mining
import parameters
from batch_mining import MINERS
from batch_mining.base import BatchMiner
from batch_mining.semihard import resolve_margin
from utilities.errors import ConfigError

TRIPLET_MINERS = [key for key, miner in MINERS.items() if miner.output == "triplets"]


pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def parser_defaults() -> dict[str, object]:
    """Every flag at its parser default (``--loss triplet``), parsed once."""
    return vars(parameters.build_parser().parse_args(["--loss", "triplet"]))


def make_opt(**overrides: object) -> argparse.Namespace:
    """Every flag at its parser default, then ``overrides``."""
    return argparse.Namespace(**{**parser_defaults(), **overrides})


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


def assert_rule(miner: BatchMiner, mined: torch.Tensor, labels: torch.Tensor) -> None:
    """The triplets obey the miner's documented ``triplet_rule`` (``batch_mining.base``)."""
    a, p, n = mined.T
    same_ap, same_an = labels[a] == labels[p], labels[a] == labels[n]
    ordinary = (a != p) & same_ap & ~same_an
    if miner.triplet_rule == "labels":
        assert ordinary.all()
    elif miner.triplet_rule == "labels_or_push":
        push = (a == p) & same_an & (n != a)
        assert (ordinary | push).all()
    elif miner.triplet_rule == "one_class":
        assert (same_ap & same_an).all()
    else:
        assert miner.triplet_rule == "shuffled_labels", f"undocumented rule {miner.triplet_rule!r}"


@pytest.mark.parametrize("key", TRIPLET_MINERS)
def test_triplets_are_valid(key: str) -> None:
    embeds, labels = make_batch()
    embeds.requires_grad_(True)
    miner = batch_mining.build(make_opt(batch_mining=key))
    torch.manual_seed(0)
    mined = miner(embeds, labels)
    assert mined.dtype == torch.long and mined.shape[1] == 3 and len(mined) > 0
    assert not mined.requires_grad and mined.device == embeds.device
    assert ((mined >= 0) & (mined < len(labels))).all()
    if miner.triplet_rule == "shuffled_labels":
        torch.manual_seed(0)  # the shuffle is the miner's first random draw
        labels = miner.shuffle(labels)
        assert sorted(labels.tolist()) == sorted(make_batch()[1].tolist())
        assert_rule(MINERS.get("distance")(make_opt()), mined, labels)
    else:
        assert_rule(miner, mined, labels)


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
    miner = batch_mining.build(make_opt(batch_mining=key))
    mined = miner(embeds, torch.tensor(labels))
    assert mined.dtype == torch.long and mined.shape[1] == 3
    if miner.triplet_rule == "one_class":  # any class is a source of (a, p, n), with replacement
        assert len(mined) == len(labels)
        assert_rule(miner, mined, torch.tensor(labels))
    else:
        assert mined.shape == (0, 3)


@pytest.mark.parametrize(
    "key",
    ["semihard", "softhard", "distance", "rho_distance", "parametric", "anchor_random", "hard"],
)
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
    # Negatives at chords 1.68, 1.93, 2.0 (all beyond 1.4) in 16 dimensions, where q(d)⁻¹ would
    # pick the farthest almost always: the fallback is uniform, as in Wu et al.'s code.
    angles = torch.tensor([0.0, 0.3, 2.0, 2.6, 3.0])
    embeds = torch.zeros(len(angles), 16)
    embeds[:, 0], embeds[:, 1] = angles.cos(), angles.sin()
    labels = torch.tensor([0, 0, 1, 2, 3])
    torch.manual_seed(0)
    drawn = torch.stack([mine("distance", embeds, labels)[0, 2] for _ in range(600)])
    counts = torch.bincount(drawn, minlength=5)[2:].numpy()
    assert counts.sum() == 600 and stats.chisquare(counts).pvalue > 1e-3


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


@pytest.mark.parametrize("key", ["distance", "rho_distance"])
@pytest.mark.parametrize("no_upper", [True, False], ids=["no-cutoff", "cutoff"])
def test_distance_negative_frequencies_follow_inverse_density(key: str, no_upper: bool) -> None:
    """Negatives drawn ∝ q(d)⁻¹ (0 beyond the upper cutoff unless disabled); for rho_distance the
    ordinary (non-push) triplets follow the same law."""
    dim = 5
    embeds, labels = make_batch(n_classes=7, per_class=2, dim=dim, seed=4)
    dist = distance_matrix(embeds)
    flags = {f"miner_{key}_no_upper_cutoff": no_upper, "miner_rho_distance_cp": 0.3}
    miner = batch_mining.build(make_opt(batch_mining=key, **flags))
    torch.manual_seed(0)
    mined = torch.stack([miner(embeds, labels) for _ in range(1500)])
    for anchor in range(len(labels)):
        negatives = np.flatnonzero(labels.numpy() != labels[anchor].item())
        weights = inverse_density(dist[anchor, negatives], dim, 0.5)
        if not no_upper:
            weights = np.where(dist[anchor, negatives] <= 1.4, weights, 0.0)
        expected = weights / weights.sum()
        rows = mined[:, anchor]
        drawn = rows[rows[:, 0] != rows[:, 1], 2].numpy()  # without rho's push triplets
        draws = len(drawn)
        observed = np.array([(drawn == n).sum() for n in negatives])
        assert observed.sum() == draws > 900
        assert observed[expected == 0].sum() == 0
        support = expected > 0
        if support.sum() > 1:
            result = stats.chisquare(observed[support], expected[support] * draws)
            assert result.pvalue > 1e-4, (anchor, observed, expected * draws)
        assert 0.5 * np.abs(observed / draws - expected).sum() < 0.06


def test_rho_distance_push_triplets() -> None:
    """With probability ρ a triplet becomes (a, a, p): its negative slot a same-class sample ≠ a;
    ρ = 0 is exactly ``distance``, ρ = 1 pushes every anchor's positive."""
    embeds, labels = make_batch(n_classes=8, per_class=3, dim=8, seed=6)
    torch.manual_seed(1)
    plain = mine("distance", embeds, labels)
    torch.manual_seed(1)
    assert torch.equal(mine("rho_distance", embeds, labels, miner_rho_distance_cp=0.0), plain)
    torch.manual_seed(1)
    pushed = mine("rho_distance", embeds, labels, miner_rho_distance_cp=1.0)
    assert torch.equal(pushed, torch.stack([plain[:, 0], plain[:, 0], plain[:, 1]], dim=1))
    torch.manual_seed(0)
    rho = 0.3
    mined = torch.cat(
        [mine("rho_distance", embeds, labels, miner_rho_distance_cp=rho) for _ in range(200)]
    )
    push = mined[:, 0] == mined[:, 1]
    assert (labels[mined[push, 2]] == labels[mined[push, 0]]).all()
    assert (mined[push, 2] != mined[push, 0]).all()
    assert stats.binomtest(int(push.sum()), len(mined), rho).pvalue > 1e-3


def test_rho_distance_reads_its_own_cutoffs() -> None:
    miner = batch_mining.build(
        make_opt(
            batch_mining="rho_distance",
            miner_rho_distance_lower_cutoff=0.3,
            miner_rho_distance_upper_cutoff=1.2,
            miner_distance_lower_cutoff=0.9,
        )
    )
    assert (miner.lower_cutoff, miner.upper_cutoff, miner.push_probability) == (0.3, 1.2, 0.2)
    off = make_opt(batch_mining="rho_distance", miner_rho_distance_no_upper_cutoff=True)
    assert batch_mining.build(off).upper_cutoff is None


def test_random_distance_ignores_the_true_labels() -> None:
    """Positives share a class of the shuffled labels: a true positive only by chance,
    (per_class − 1)/(B − 1) = 2/17 here (the distance miner would always give one)."""
    embeds, labels = make_batch(n_classes=6, per_class=3, dim=8, seed=7)
    torch.manual_seed(0)
    mined = torch.cat([mine("random_distance", embeds, labels) for _ in range(200)])
    true_positive = labels[mined[:, 0]] == labels[mined[:, 1]]
    assert stats.binomtest(int(true_positive.sum()), len(mined), 2 / 17).pvalue > 1e-3
    miner = batch_mining.build(make_opt(batch_mining="random_distance"))
    assert (miner.lower_cutoff, miner.upper_cutoff) == (0.5, 1.4)
    reference = make_opt(batch_mining="random_distance", miner_distance_no_upper_cutoff=True)
    assert batch_mining.build(reference).upper_cutoff is None


def test_intra_random_classes_and_members_uniform() -> None:
    """A class uniformly among the batch's classes (not ∝ its size), then a, p, n uniformly
    within it, with replacement."""
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2])
    embeds = torch.randn(len(labels), 4)
    torch.manual_seed(0)
    mined = torch.cat([mine("intra_random", embeds, labels) for _ in range(400)])
    assert len(mined) == 400 * len(labels)
    classes = labels[mined[:, 0]]
    assert (labels[mined[:, 1]] == classes).all() and (labels[mined[:, 2]] == classes).all()
    assert stats.chisquare(np.bincount(classes.numpy(), minlength=3)).pvalue > 1e-3
    for column in range(3):
        members = mined[classes == 0, column].numpy()
        assert stats.chisquare(np.bincount(members, minlength=5)).pvalue > 1e-3
    assert (mined[:, 0] == mined[:, 1]).any()  # with replacement


def parametric_opt(mode: str, **flags: object) -> argparse.Namespace:
    return make_opt(**{"batch_mining": "parametric", "miner_parametric_mode": mode, **flags})


def naive_bin_weights(dist: float, mode: str, n_support: int, low: float, high: float) -> float:
    """Weight of a negative at ``dist``: 1 if inside the support and its bin's centre in range."""
    if not low <= dist <= high:
        return 0.0
    edges = [low + k * (high - low) / (n_support - 1) for k in range(n_support)]
    k = sum(1 for edge in edges[1:-1] if edge < dist)
    centre = (edges[k] + edges[k + 1]) / 2
    inside = {
        "uniform": True,
        "hards": centre <= 0.5,
        "semihards": 0.3 <= centre <= 0.7,
        "veryhards": centre <= 0.3,
    }[mode]
    return float(inside)


@pytest.mark.parametrize("mode", ["uniform", "hards", "semihards", "veryhards"])
def test_parametric_modes_follow_their_distribution(mode: str) -> None:
    """Negatives drawn uniformly among the negatives whose distance bin lies in the mode's range
    (chi-square against a naive per-anchor computation); a uniform negative when none does."""
    embeds, labels = make_batch(n_classes=8, per_class=3, dim=3, seed=8)
    dist = distance_matrix(embeds)
    draws = 600
    miner = batch_mining.build(parametric_opt(mode))
    torch.manual_seed(0)
    mined = torch.stack([miner(embeds, labels) for _ in range(draws)])
    in_range = tested = 0
    for anchor in range(len(labels)):
        negatives = np.flatnonzero(labels.numpy() != labels[anchor].item())
        weights = np.array(
            [naive_bin_weights(dist[anchor, n], mode, 30, 0.1, 1.4) for n in negatives]
        )
        if weights.sum() == 0:
            weights = np.ones(len(negatives))  # the documented fallback
        else:
            in_range += 1
        expected = weights / weights.sum()
        drawn = mined[:, anchor, 2].numpy()
        observed = np.array([(drawn == n).sum() for n in negatives])
        assert observed.sum() == draws
        assert observed[expected == 0].sum() == 0
        support = expected > 0
        if support.sum() > 1:
            tested += 1
            result = stats.chisquare(observed[support], expected[support] * draws)
            assert result.pvalue > 1e-4, (anchor, observed, expected * draws)
    assert in_range > 0 and tested > 0


def test_parametric_hard_modes_pick_close_negatives() -> None:
    """Drawn negatives lie in the mode's range, up to half a bin (0.0224) at its edges."""
    embeds, labels = make_batch(n_classes=8, per_class=3, dim=3, seed=8)
    dist = distance_matrix(embeds)
    for mode, (low, high) in {"hards": (0.1, 0.5), "semihards": (0.3, 0.7)}.items():
        torch.manual_seed(0)
        mined = torch.cat(
            [batch_mining.build(parametric_opt(mode))(embeds, labels) for _ in range(50)]
        )
        d = dist[mined[:, 0].numpy(), mined[:, 2].numpy()]
        has_range = [
            any(low <= dist[a, n] <= high for n in range(len(labels)) if labels[n] != labels[a])
            for a in mined[:, 0].tolist()
        ]
        d = d[np.array(has_range)]
        assert len(d) > 0 and (d >= low - 0.023).all() and (d <= high + 0.023).all()


def test_parametric_flags_are_defined_and_checked() -> None:
    opt = parameters.build_parser().parse_args([])
    assert opt.miner_parametric_mode == "uniform"
    assert opt.miner_parametric_n_support == 30 and opt.miner_parametric_support_lim == [0.1, 1.4]
    parsed = parameters.build_parser().parse_args(
        ["--miner_parametric_mode", "veryhards", "--miner_parametric_support_lim", "0.2", "1.0"]
    )
    assert parsed.miner_parametric_support_lim == [0.2, 1.0]
    for flag, value in [
        ("miner_parametric_n_support", 1),
        ("miner_parametric_support_lim", [1.0, 0.5]),
        ("miner_parametric_mode", "hardest"),
    ]:
        with pytest.raises(ConfigError, match=f"--{flag}"):
            batch_mining.build(parametric_opt("uniform", **{flag: value}))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("key", TRIPLET_MINERS)
def test_mines_on_the_embeddings_device(key: str) -> None:
    embeds, labels = make_batch()
    miner = batch_mining.build(make_opt(batch_mining=key))
    mined = miner(embeds.to("cuda"), labels)  # CPU labels, as the DataLoader gives them
    assert mined.device == embeds.to("cuda").device and len(mined) > 0
    if miner.triplet_rule != "shuffled_labels":
        assert_rule(miner, mined.cpu(), labels)


def test_hard_picks_the_nearest_negative() -> None:
    embeds, labels = make_batch(n_classes=5, per_class=3, dim=8, seed=4)
    mined = mine("hard", embeds, labels)
    dist = distance_matrix(embeds)
    for a, p, n in mined.tolist():
        others = [j for j in range(len(labels)) if labels[j] != labels[a]]
        assert dist[a, n] == pytest.approx(min(dist[a, j] for j in others), abs=1e-6)
        assert labels[p] == labels[a] and p != a


def test_anchor_random_negatives_are_uniform() -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 3])
    counts = np.zeros(6)
    torch.manual_seed(0)
    for _ in range(1500):
        mined = mine("anchor_random", torch.randn(6, 4), labels)
        assert mined[:, 0].tolist() == [0, 1, 2, 3]  # anchors 4 and 5 have no positive
        counts += np.bincount(mined[mined[:, 0] == 0, 2].numpy(), minlength=6)
    assert counts[:2].sum() == 0  # anchor 0's negatives are 2, 3, 4, 5
    assert stats.chisquare(counts[2:]).pvalue > 1e-3
