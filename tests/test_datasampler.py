"""Batch samplers: batch composition, epoch length, coverage, seeding and exact resume."""

from __future__ import annotations

import argparse
import io
import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import datasampler
from datasampler import SAMPLERS
from utilities.errors import ConfigError


def make_opt(key: str, **overrides: object) -> argparse.Namespace:
    values = {
        "data_sampler": key,
        "bs": 12,
        "samples_per_class": 3,
        "seed": 0,
        "data_batchmatch_bigbs": 48,
        "data_batchmatch_ncomps": 10,
        "data_sampler_lowproj_dim": -1,
        "data_gc_softened": False,
        "data_d2_coreset_lambda": 1.0,
        "data_batchmatch_reference_wasserstein": False,
    }
    values.update(overrides)
    return argparse.Namespace(**values)


def fixed_embeddings(n: int, dim: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def build(opt: argparse.Namespace, labels: np.ndarray) -> datasampler.BatchSampler:
    """The sampler, given fixed training-set embeddings when it selects from embeddings."""
    sampler = datasampler.build(opt, labels)
    if sampler.needs_embeddings:
        sampler.set_embeddings(fixed_embeddings(len(labels)))
    return sampler


def make_labels(seed: int = 0) -> np.ndarray:
    """Imbalanced, non-contiguous class ids (1 to 9 samples per class), shuffled."""
    sizes = np.arange(1, 10)
    labels = np.repeat(sizes * 10, sizes)
    return np.random.default_rng(seed).permutation(labels)


def epoch(sampler: datasampler.BatchSampler) -> list[list[int]]:
    return list(iter(sampler))


@pytest.mark.parametrize("key", SAMPLERS.keys())
def test_batches_and_epoch_length(key: str) -> None:
    labels = make_labels()
    sampler = build(make_opt(key), labels)
    assert isinstance(sampler, torch.utils.data.Sampler)
    assert len(sampler) == len(labels) // 12 == 3
    batches = epoch(sampler)
    assert len(batches) == 3
    for batch in batches:
        assert len(batch) == 12
        assert all(type(i) is int and 0 <= i < len(labels) for i in batch)


@pytest.mark.parametrize("key", SAMPLERS.keys())
def test_every_sample_is_drawn_over_many_epochs(key: str) -> None:
    labels = make_labels()
    sampler = build(make_opt(key), labels)
    seen: set[int] = set()
    for _ in range(300):  # stops as soon as every sample was drawn
        seen.update(i for batch in epoch(sampler) for i in batch)
        if len(seen) == len(labels):
            break
    assert seen == set(range(len(labels)))


@pytest.mark.parametrize("key", SAMPLERS.keys())
def test_seeded_and_distinct_epochs(key: str) -> None:
    labels = make_labels()
    first = build(make_opt(key, seed=5), labels)
    second = build(make_opt(key, seed=5), labels)
    other = build(make_opt(key, seed=6), labels)
    run = [epoch(first), epoch(first)]
    assert run == [epoch(second), epoch(second)]
    assert run[0] != run[1]
    assert run[0] != epoch(other)


@pytest.mark.parametrize("key", SAMPLERS.keys())
def test_state_dict_resumes_exactly_through_torch_save(key: str) -> None:
    labels = make_labels()
    original = build(make_opt(key, seed=3), labels)
    epoch(original)
    buffer = io.BytesIO()
    torch.save({"sampler": original.state_dict()}, buffer)
    expected = [epoch(original), epoch(original)]
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["sampler"]
    resumed = build(make_opt(key, seed=99), labels)
    resumed.load_state_dict(state)
    assert [epoch(resumed), epoch(resumed)] == expected


@pytest.mark.parametrize("key", SAMPLERS.keys())
def test_too_small_training_set_names_bs(key: str) -> None:
    with pytest.raises(ConfigError, match="--bs"):
        build(make_opt(key, bs=50), make_labels())
    exact = build(make_opt(key, bs=45), make_labels())
    assert len(exact) == 1 and len(epoch(exact)[0]) == 45


@pytest.mark.parametrize("key", SAMPLERS.keys())
def test_works_as_dataloader_batch_sampler(key: str) -> None:
    labels = make_labels()
    data = TensorDataset(torch.arange(len(labels)), torch.from_numpy(labels))
    sampler = build(make_opt(key), labels)
    loader = DataLoader(data, batch_sampler=sampler)
    batches = list(loader)
    assert len(batches) == len(sampler)
    for index, label in batches:
        assert index.shape == (12,) and torch.equal(label, torch.from_numpy(labels[index.numpy()]))


def test_unknown_sampler_is_config_error() -> None:
    with pytest.raises(ConfigError, match="--data_sampler"):
        build(make_opt("class_randon"), make_labels())


@pytest.mark.parametrize("spc", [1, 2, 3, 4])
def test_class_random_spc_structure(spc: int) -> None:
    labels = make_labels()
    sampler = build(make_opt("class_random", samples_per_class=spc), labels)
    for batch in itertools.chain.from_iterable(epoch(sampler) for _ in range(20)):
        groups = labels[batch].reshape(12 // spc, spc)
        assert (groups == groups[:, :1]).all()


def test_class_random_draws_classes_uniformly() -> None:
    labels = make_labels()
    sampler = build(make_opt("class_random", samples_per_class=3), labels)
    drawn = [labels[batch[0::3]] for _ in range(400) for batch in epoch(sampler)]
    _, counts = np.unique(np.concatenate(drawn), return_counts=True)
    assert len(counts) == 9
    frequencies = counts / counts.sum()
    assert np.abs(frequencies - 1 / 9).max() < 0.02  # sample-uniform would give 1/45 … 9/45


def test_full_random_needs_two_samples_per_batch() -> None:
    with pytest.raises(ConfigError, match="--bs"):
        build(make_opt("full_random", bs=1), make_labels())


def test_full_random_always_has_a_positive_pair() -> None:
    labels = make_labels()
    sampler = build(make_opt("full_random", bs=4), labels)
    for _ in range(200):
        for batch in epoch(sampler):
            batch_labels = labels[batch]
            partner = [j for j in range(len(batch) - 1) if batch_labels[j] == batch_labels[-1]]
            assert partner
            if (labels == batch_labels[-1]).sum() > 1:
                assert any(batch[j] != batch[-1] for j in partner)


EMBEDDING_SAMPLERS = [key for key in SAMPLERS if SAMPLERS.get(key).needs_embeddings]


def test_embedding_samplers_are_the_coreset_and_batchmatch_ones() -> None:
    assert set(EMBEDDING_SAMPLERS) == {
        "d2_coreset",
        "disthist_batchmatch",
        "fid_batchmatch",
        "greedy_coreset",
    }


@pytest.mark.parametrize("key", EMBEDDING_SAMPLERS)
@pytest.mark.parametrize("spc", [1, 2, 3])
def test_embedding_samplers_keep_spc_structure(key: str, spc: int) -> None:
    labels = make_labels()
    sampler = build(make_opt(key, samples_per_class=spc), labels)
    for batch in itertools.chain.from_iterable(epoch(sampler) for _ in range(5)):
        assert len(batch) == 12
        groups = labels[batch].reshape(12 // spc, spc)
        assert (groups == groups[:, :1]).all()


@pytest.mark.parametrize("key", EMBEDDING_SAMPLERS)
def test_embedding_samplers_need_embeddings_of_the_training_set(key: str) -> None:
    labels = make_labels()
    sampler = datasampler.build(make_opt(key), labels)
    with pytest.raises(RuntimeError, match="set_embeddings"):
        epoch(sampler)
    with pytest.raises(ValueError, match=f"--data_sampler {key}"):
        sampler.set_embeddings(torch.zeros(len(labels) - 1, 4))


@pytest.mark.parametrize("key", EMBEDDING_SAMPLERS)
def test_batches_follow_the_embeddings(key: str) -> None:
    labels = make_labels()
    sampler = build(make_opt(key, seed=1), labels)
    state = sampler.state_dict()
    first = epoch(sampler)
    sampler.load_state_dict(state)
    sampler.set_embeddings(fixed_embeddings(len(labels), seed=7))
    assert epoch(sampler) != first


def naive_k_center(points: torch.Tensor, first: int, count: int) -> list[int]:
    chosen = [first]
    for _ in range(count - 1):
        best, best_score = -1, -1.0
        for i in range(len(points)):
            score = min(float(((points[i] - points[c]) ** 2).sum()) for c in chosen)
            if score > best_score:
                best, best_score = i, score
        chosen.append(best)
    return chosen


def test_greedy_coreset_centres_are_the_k_center_selection_of_the_big_batch() -> None:
    """With the big batch = the whole set, the batch's centres (first of each class group) are
    exactly greedy k-center on the stored embeddings: the selection maps to the right indices."""
    labels = make_labels()
    sampler = build(make_opt("greedy_coreset", samples_per_class=2), labels)
    embeds = sampler.embeddings
    for batch in epoch(sampler) + epoch(sampler):
        centres = batch[0::2]
        assert centres == naive_k_center(embeds, centres[0], len(centres))


def test_greedy_coreset_big_batches_differ_within_an_epoch() -> None:
    labels = np.repeat(np.arange(40), 5)
    sampler = build(make_opt("greedy_coreset", bs=20, data_batchmatch_bigbs=20), labels)
    batches = epoch(sampler)
    assert len(batches) == 10
    assert len({tuple(sorted(b[0::3])) for b in batches}) > 5


def test_greedy_coreset_softened_picks_among_the_top_three_percent() -> None:
    labels = np.repeat(np.arange(50), 4)
    sampler = build(
        make_opt(
            "greedy_coreset", samples_per_class=1, data_gc_softened=True, data_batchmatch_bigbs=200
        ),
        labels,
    )
    embeds = sampler.embeddings
    for batch in epoch(sampler):
        for j in range(1, len(batch)):
            scores = torch.stack([((embeds - embeds[c]) ** 2).sum(1) for c in batch[:j]]).min(0)
            rank = int((scores.values > scores.values[batch[j]]).sum())
            assert rank < 6  # ceil(3% of 200)


def test_d2_coreset_selects_distinct_points_pushed_apart_by_lambda() -> None:
    labels = np.arange(60) % 12
    embeds = fixed_embeddings(60, dim=3) * 0.01
    embeds[:6] += torch.eye(3).repeat(2, 1) * torch.tensor(
        [[3.0], [3.0], [3.0], [-3.0], [-3.0], [-3.0]]
    )
    opt = make_opt(
        "d2_coreset",
        bs=6,
        samples_per_class=1,
        data_d2_coreset_lambda=30.0,
        data_batchmatch_bigbs=60,
    )
    sampler = datasampler.build(opt, labels)
    sampler.set_embeddings(embeds)
    far_hits = 0
    for batch in epoch(sampler):
        assert len(set(batch)) == 6
        far_hits += sum(i < 6 for i in batch[1:])
    assert far_hits >= 0.8 * 5 * len(sampler)
    flat = datasampler.build(
        make_opt(
            "d2_coreset",
            bs=6,
            samples_per_class=1,
            data_d2_coreset_lambda=0.0,
            data_batchmatch_bigbs=60,
        ),
        labels,
    )
    flat.set_embeddings(embeds)
    assert sum(i < 6 for b in epoch(flat) for i in b[1:]) < far_hits


def naive_disthist_cost(big: np.ndarray, cand: np.ndarray, reference: bool = False) -> float:
    def dists(x: np.ndarray) -> list[float]:
        return [
            float(np.linalg.norm(x[i] - x[j])) for i in range(len(x)) for j in range(i + 1, len(x))
        ]

    big_d, cand_d = dists(big), dists(cand)
    edges = np.linspace(min(big_d), max(big_d), 51)
    h_big = np.histogram(np.clip(big_d, edges[0], edges[-1]), edges)[0] / len(big_d)
    h_cand = np.histogram(np.clip(cand_d, edges[0], edges[-1]), edges)[0] / len(cand_d)
    if reference:  # the reference: scipy's W1 between the two arrays of bin heights as samples
        from scipy.stats import wasserstein_distance

        w1 = wasserstein_distance(h_big, h_cand)
    else:
        w1 = np.abs(np.cumsum(h_big) - np.cumsum(h_cand)).sum() * (edges[1] - edges[0])
    return (
        np.linalg.norm(big.mean(0) - cand.mean(0))
        + np.linalg.norm(big.std(0) - cand.std(0))
        + 75 * 2 * w1
    )


def naive_fid_cost(big: np.ndarray, cand: np.ndarray) -> float:
    from scipy.linalg import sqrtm

    cov_b, cov_c = np.cov(big, rowvar=False), np.cov(cand, rowvar=False)
    cross = np.real(np.trace(sqrtm(cov_b @ cov_c)))
    return float(
        ((big.mean(0) - cand.mean(0)) ** 2).sum() + np.trace(cov_b) + np.trace(cov_c) - 2 * cross
    )


def naive_reference_disthist_cost(big: np.ndarray, cand: np.ndarray) -> float:
    return naive_disthist_cost(big, cand, reference=True)


@pytest.mark.parametrize(
    ("key", "naive", "overrides"),
    [
        ("disthist_batchmatch", naive_disthist_cost, {}),
        (
            "disthist_batchmatch",
            naive_reference_disthist_cost,
            {"data_batchmatch_reference_wasserstein": True},
        ),
        ("disthist_batchmatch", naive_disthist_cost, {"data_sampler_lowproj_dim": 2}),
        ("fid_batchmatch", naive_fid_cost, {}),
        ("fid_batchmatch", naive_fid_cost, {"data_sampler_lowproj_dim": 2}),
    ],
)
def test_batchmatch_costs_match_naive_and_the_cheapest_candidate_wins(
    key: str, naive: object, overrides: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = make_labels()
    sampler = build(make_opt(key, data_batchmatch_bigbs=30, **overrides), labels)
    dim = overrides.get("data_sampler_lowproj_dim", 4)
    seen = []
    original = type(sampler).costs

    def recording(self: object, big: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        costs = original(self, big, candidates)
        seen.append((big, candidates, costs))
        return costs

    monkeypatch.setattr(type(sampler), "costs", recording)
    for batch in sampler:  # lazily: seen[-1] belongs to this batch
        big, candidates, costs = seen[-1]
        assert big.shape == (30, dim) and candidates.shape == (10, 12, dim)
        expected = [naive(big.numpy(), c.numpy()) for c in candidates]
        assert costs.tolist() == pytest.approx(expected, rel=1e-6, abs=1e-8)
        chosen = sampler.embeddings[batch].double()
        # Candidates holding the same samples in another order tie (to ~1e-15), and costs agree
        # with the naive ones only to the tolerance above: the sampler may pick any candidate
        # within it of the cheapest, so compare costs, not identities.
        cheapest = min(expected)
        tied = [c for c, cost in zip(candidates, expected, strict=True)
                if cost <= cheapest + 2e-6 * abs(cheapest) + 2e-8]  # fmt: skip
        if dim == 4:
            assert any(torch.equal(chosen, best) for best in tied)
        else:  # the chosen samples' embeddings map linearly onto a cheapest projected candidate
            fits = [torch.linalg.lstsq(chosen, best).solution for best in tied]
            assert any(
                torch.allclose(chosen @ w, b, atol=1e-8) for w, b in zip(fits, tied, strict=True)
            )


@pytest.mark.parametrize("key", ["disthist_batchmatch", "fid_batchmatch"])
def test_batchmatch_candidates_come_from_the_spc_big_batch(key: str, monkeypatch) -> None:
    labels = make_labels()
    sampler = build(make_opt(key, data_batchmatch_bigbs=24), labels)
    seen = []
    original = type(sampler).costs
    monkeypatch.setattr(
        type(sampler), "costs", lambda self, b, c: seen.append((b, c)) or original(self, b, c)
    )
    for _ in sampler:
        big, candidates = seen[-1]
        big_rows = {tuple(row.tolist()) for row in big}
        assert all(tuple(row.tolist()) in big_rows for row in candidates.reshape(-1, 4))


def test_batchmatch_big_batch_smaller_than_bs_is_config_error() -> None:
    with pytest.raises(ConfigError, match="--data_batchmatch_bigbs"):
        datasampler.build(make_opt("fid_batchmatch", data_batchmatch_bigbs=6), make_labels())


@pytest.mark.slow
def test_resuming_main_with_an_embedding_sampler_reproduces_the_run(tmp_path) -> None:
    """Two epochs straight vs. one epoch, then ``--resume`` for the second: the batches (chosen
    from the model's embeddings), the loss parameters and the metrics come out identical."""
    import main
    from utilities.checkpoint import load_checkpoint

    flags = [
        "--loss", "proxy_anchor", "--data_sampler", "greedy_coreset", "--bs", "200",
        "--data_batchmatch_bigbs", "300", "--no_train_metrics", "--evaluation_metrics",
        "e_recall@1", "--storage_metrics", "e_recall@1", "--num_workers", "0",
        "--seed", "4", "--savename", "run",
    ]  # fmt: skip
    straight = tmp_path / "straight"
    main.train([*flags, "--n_epochs", "2", "--save_path", str(straight)])
    split = tmp_path / "split"
    main.train([*flags, "--n_epochs", "1", "--save_path", str(split)])
    last = split / "digits" / "run" / "checkpoint_last.pth"
    main.train(["--resume", str(last), "--n_epochs", "2"])

    expected = load_checkpoint(straight / "digits" / "run" / "checkpoint_last.pth", "test")
    actual = load_checkpoint(last, "test")
    assert actual["epoch"] == expected["epoch"] == 2
    for name in ("model", "criterion"):
        for key, value in expected[name].items():
            assert torch.equal(actual[name][key], value), (name, key)
    assert actual["sampler"] == expected["sampler"]
    assert actual["history"]["Test"]["e_recall@1"] == expected["history"]["Test"]["e_recall@1"]
    assert actual["history"]["Train"]["loss"] == expected["history"]["Train"]["loss"]
