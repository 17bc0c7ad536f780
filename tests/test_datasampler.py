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
    values = {"data_sampler": key, "bs": 12, "samples_per_class": 3, "seed": 0}
    values.update(overrides)
    return argparse.Namespace(**values)


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
    sampler = datasampler.build(make_opt(key), labels)
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
    sampler = datasampler.build(make_opt(key), labels)
    seen = {i for _ in range(300) for batch in epoch(sampler) for i in batch}
    assert seen == set(range(len(labels)))


@pytest.mark.parametrize("key", SAMPLERS.keys())
def test_seeded_and_distinct_epochs(key: str) -> None:
    labels = make_labels()
    first = datasampler.build(make_opt(key, seed=5), labels)
    second = datasampler.build(make_opt(key, seed=5), labels)
    other = datasampler.build(make_opt(key, seed=6), labels)
    run = [epoch(first), epoch(first)]
    assert run == [epoch(second), epoch(second)]
    assert run[0] != run[1]
    assert run[0] != epoch(other)


@pytest.mark.parametrize("key", SAMPLERS.keys())
def test_state_dict_resumes_exactly_through_torch_save(key: str) -> None:
    labels = make_labels()
    original = datasampler.build(make_opt(key, seed=3), labels)
    epoch(original)
    buffer = io.BytesIO()
    torch.save({"sampler": original.state_dict()}, buffer)
    expected = [epoch(original), epoch(original)]
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["sampler"]
    resumed = datasampler.build(make_opt(key, seed=99), labels)
    resumed.load_state_dict(state)
    assert [epoch(resumed), epoch(resumed)] == expected


@pytest.mark.parametrize("key", SAMPLERS.keys())
def test_too_small_training_set_names_bs(key: str) -> None:
    with pytest.raises(ConfigError, match="--bs"):
        datasampler.build(make_opt(key, bs=50), make_labels())
    exact = datasampler.build(make_opt(key, bs=45), make_labels())
    assert len(exact) == 1 and len(epoch(exact)[0]) == 45


@pytest.mark.parametrize("key", SAMPLERS.keys())
def test_works_as_dataloader_batch_sampler(key: str) -> None:
    labels = make_labels()
    data = TensorDataset(torch.arange(len(labels)), torch.from_numpy(labels))
    sampler = datasampler.build(make_opt(key), labels)
    loader = DataLoader(data, batch_sampler=sampler)
    batches = list(loader)
    assert len(batches) == len(sampler)
    for index, label in batches:
        assert index.shape == (12,) and torch.equal(label, torch.from_numpy(labels[index.numpy()]))


def test_unknown_sampler_is_config_error() -> None:
    with pytest.raises(ConfigError, match="--data_sampler"):
        datasampler.build(make_opt("class_randon"), make_labels())


@pytest.mark.parametrize("spc", [1, 2, 3, 4])
def test_class_random_spc_structure(spc: int) -> None:
    labels = make_labels()
    sampler = datasampler.build(make_opt("class_random", samples_per_class=spc), labels)
    for batch in itertools.chain.from_iterable(epoch(sampler) for _ in range(20)):
        groups = labels[batch].reshape(12 // spc, spc)
        assert (groups == groups[:, :1]).all()


def test_class_random_draws_classes_uniformly() -> None:
    labels = make_labels()
    sampler = datasampler.build(make_opt("class_random", samples_per_class=3), labels)
    drawn = [labels[batch[0::3]] for _ in range(400) for batch in epoch(sampler)]
    _, counts = np.unique(np.concatenate(drawn), return_counts=True)
    assert len(counts) == 9
    frequencies = counts / counts.sum()
    assert np.abs(frequencies - 1 / 9).max() < 0.02  # sample-uniform would give 1/45 … 9/45


def test_full_random_needs_two_samples_per_batch() -> None:
    with pytest.raises(ConfigError, match="--bs"):
        datasampler.build(make_opt("full_random", bs=1), make_labels())


def test_full_random_always_has_a_positive_pair() -> None:
    labels = make_labels()
    sampler = datasampler.build(make_opt("full_random", bs=4), labels)
    for _ in range(200):
        for batch in epoch(sampler):
            batch_labels = labels[batch]
            partner = [j for j in range(len(batch) - 1) if batch_labels[j] == batch_labels[-1]]
            assert partner
            if (labels == batch_labels[-1]).sum() > 1:
                assert any(batch[j] != batch[-1] for j in partner)
