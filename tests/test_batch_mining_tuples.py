"""Set miners (npair, lifted): the ``anchor_positive_negative_sets`` format, each miner's rule
checked against a naive enumeration, edge batches, determinism and the uniform positive draw."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from scipy import stats

import batch_mining
from batch_mining import MINERS
from batch_mining.base import NEGATIVE, POSITIVE, anchor_sets, split_anchor_sets

SET_MINERS = [
    key for key, miner in MINERS.items() if miner.output == "anchor_positive_negative_sets"
]
LABELS = [0, 0, 1, 1, 1, 2, 3, 3, 3, 3, 4]  # samples 5 and 10 have no positive


def mine(
    key: str, embeds: torch.Tensor, labels: torch.Tensor, one_pair_per_class: bool = False
) -> torch.Tensor:
    opt = argparse.Namespace(batch_mining=key, miner_npair_one_pair_per_class=one_pair_per_class)
    return batch_mining.build(opt)(embeds, labels)


def make_batch(labels: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(len(labels), 8, generator=generator)
    return torch.nn.functional.normalize(embeds, dim=1), torch.tensor(labels)


def naive_sets(labels: list[int]) -> dict[int, tuple[set[int], set[int]]]:
    """Every anchor with a same-class partner and an other-class sample: (its same-class samples
    other than itself, its other-class samples)."""
    result = {}
    for a, y in enumerate(labels):
        same = {j for j, other in enumerate(labels) if other == y and j != a}
        different = {j for j, other in enumerate(labels) if other != y}
        if same and different:
            result[a] = (same, different)
    return result


def decode(mined: torch.Tensor) -> dict[int, tuple[set[int], set[int]]]:
    rows = {}
    for row in mined.tolist():
        roles = row[1:]
        assert set(roles) <= {POSITIVE, NEGATIVE, 0}
        positives = {j for j, role in enumerate(roles) if role == POSITIVE}
        negatives = {j for j, role in enumerate(roles) if role == NEGATIVE}
        assert row[0] not in rows, "one row per anchor"
        rows[row[0]] = (positives, negatives)
    return rows


def test_both_set_miners_registered() -> None:
    assert set(SET_MINERS) == {"lifted", "npair"}


@pytest.mark.parametrize("key", SET_MINERS)
def test_format(key: str) -> None:
    embeds, labels = make_batch(LABELS)
    embeds.requires_grad_(True)
    mined = mine(key, embeds, labels)
    assert mined.dtype == torch.long and mined.shape == (9, 1 + len(LABELS))
    assert not mined.requires_grad and mined.device == embeds.device
    anchors, positives, negatives = split_anchor_sets(mined)
    assert anchors.tolist() == sorted(naive_sets(LABELS))
    assert not (positives & negatives).any()
    assert not positives[torch.arange(len(anchors)), anchors].any()
    assert not negatives[torch.arange(len(anchors)), anchors].any()
    assert positives.any(1).all() and negatives.any(1).all()


def test_npair_rule() -> None:
    """One positive per anchor (same class, not the anchor); negatives: every other-class
    sample, which with 2 samples per class are exactly the other classes' positives."""
    expected = naive_sets(LABELS)
    embeds, labels = make_batch(LABELS)
    for seed in range(20):
        torch.manual_seed(seed)
        rows = decode(mine("npair", embeds, labels))
        assert rows.keys() == expected.keys()
        for anchor, (positives, negatives) in rows.items():
            assert len(positives) == 1 and positives <= expected[anchor][0]
            assert negatives == expected[anchor][1]


def test_npair_negatives_are_other_classes_positives_with_two_per_class() -> None:
    pairs = [0, 0, 1, 1, 2, 2, 3, 3]
    embeds, labels = make_batch(pairs)
    rows = decode(mine("npair", embeds, labels))
    chosen = {anchor: next(iter(positives)) for anchor, (positives, _) in rows.items()}
    for anchor, (_, negatives) in rows.items():
        others = {chosen[b] for b in rows if pairs[b] != pairs[anchor]}
        assert negatives == others


def test_npair_one_pair_per_class_rule() -> None:
    """The paper's N-pair-mc tuplets: one (anchor, positive) pair per class with 2+ samples; the
    negatives of an anchor are exactly the positives of the other classes' pairs."""
    embeds, labels = make_batch(LABELS)
    anchors_seen = set()
    for seed in range(30):
        torch.manual_seed(seed)
        rows = decode(mine("npair", embeds, labels, one_pair_per_class=True))
        assert sorted(LABELS[a] for a in rows) == [0, 1, 3]  # classes with two or more samples
        pairs = {a: next(iter(positives)) for a, (positives, _) in rows.items()}
        for anchor, (positives, negatives) in rows.items():
            (positive,) = positives
            assert positive != anchor and LABELS[positive] == LABELS[anchor]
            assert negatives == {p for a, p in pairs.items() if a != anchor}
        anchors_seen |= set(rows)
    assert anchors_seen == {0, 1, 2, 3, 4, 6, 7, 8, 9}  # every member of those classes


@pytest.mark.parametrize("labels", [[3, 3, 3, 3], [0, 1, 2, 3], [0, 1], [5, 5], [7], [0, 0, 1, 2]])
def test_npair_one_pair_per_class_nothing_to_mine(labels: list[int]) -> None:
    embeds, labels = make_batch(labels)
    mined = mine("npair", embeds, labels, one_pair_per_class=True)
    assert mined.shape == (0, 1 + len(labels)) and mined.dtype == torch.long


def test_lifted_rule() -> None:
    embeds, labels = make_batch(LABELS)
    assert decode(mine("lifted", embeds, labels)) == naive_sets(LABELS)
    assert torch.equal(mine("lifted", embeds, labels), mine("lifted", embeds.flip(0), labels))


def test_npair_positive_is_uniform() -> None:
    labels = torch.tensor([0, 0, 0, 0, 1, 2])  # anchor 0 has positives 1, 2, 3
    embeds = torch.randn(6, 4)
    torch.manual_seed(0)
    draws = torch.stack([mine("npair", embeds, labels)[0] for _ in range(900)])
    assert (draws[:, 0] == 0).all()
    counts = (draws[:, 1:] == POSITIVE).sum(0).numpy()
    assert counts[[0, 4, 5]].sum() == 0 and counts.sum() == 900
    assert stats.chisquare(counts[1:4]).pvalue > 1e-3


def test_npair_one_pair_per_class_pair_is_uniform() -> None:
    """The (anchor, positive) pair of a class is a uniformly random ordered pair of distinct
    members: all 6 ordered pairs of class 0's three members equally often."""
    labels = torch.tensor([0, 1, 0, 2, 0, 1, 2])
    embeds = torch.randn(7, 4)
    torch.manual_seed(0)
    counts: dict[tuple[int, int], int] = {}
    for _ in range(1200):
        rows = decode(mine("npair", embeds, labels, one_pair_per_class=True))
        ((pair,),) = [
            [(a, p) for p in positives] for a, (positives, _) in rows.items() if labels[a] == 0
        ]
        counts[pair] = counts.get(pair, 0) + 1
    assert set(counts) == {(a, p) for a in (0, 2, 4) for p in (0, 2, 4) if a != p}
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3


@pytest.mark.parametrize("key", SET_MINERS)
def test_deterministic_under_seed(key: str) -> None:
    embeds, labels = make_batch([c for c in range(8) for _ in range(4)])
    runs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        runs.append(mine(key, embeds, labels))
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(runs[0], runs[2]) == (key == "lifted")


@pytest.mark.parametrize("key", SET_MINERS)
@pytest.mark.parametrize(
    "labels",
    [[3, 3, 3, 3], [0, 1, 2, 3], [0, 1], [5, 5], [7]],
    ids=["one-class", "no-positive", "bs2-two-classes", "bs2-one-class", "bs1"],
)
def test_nothing_to_mine_gives_empty(key: str, labels: list[int]) -> None:
    embeds, labels = make_batch(labels)
    mined = mine(key, embeds, labels)
    assert mined.shape == (0, 1 + len(labels)) and mined.dtype == torch.long


def test_pack_and_unpack_round_trip() -> None:
    generator = torch.Generator().manual_seed(0)
    positives = torch.rand(5, 7, generator=generator) < 0.3
    negatives = (torch.rand(5, 7, generator=generator) < 0.5) & ~positives
    anchors = torch.tensor([6, 0, 3, 2, 2])
    packed = anchor_sets(anchors, positives, negatives)
    assert packed.shape == (5, 8) and packed.dtype == torch.long
    assert np.array_equal(packed[:, 0].numpy(), anchors.numpy())
    unpacked = split_anchor_sets(packed)
    for got, want in zip(unpacked, (anchors, positives, negatives), strict=True):
        assert torch.equal(got, want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("key", SET_MINERS)
def test_mines_on_the_embeddings_device(key: str) -> None:
    embeds, labels = make_batch(LABELS)
    torch.manual_seed(0)
    mined = mine(key, embeds.to("cuda"), labels)
    assert mined.device.type == "cuda"
    assert decode(mined.cpu()).keys() == naive_sets(LABELS).keys()
