"""IDML's input mixup (``--input_mixup``, the standard step): the draw, the loss recomputed by
hand from the same λ and π, the two forward passes, and the defenses that reject it."""

from __future__ import annotations

import copy

import pytest
import torch

import parameters
from defenses import mixup
from tests.test_defenses import digits_batch, make_step, record_train_inputs
from utilities.errors import ConfigError


def test_draw_is_seeded_and_mixes_with_a_permutation():
    images = torch.rand(6, 1, 4, 4)
    torch.manual_seed(3)
    first = mixup.mix(images)
    torch.manual_seed(3)
    again = mixup.mix(images)
    assert torch.equal(first.weight, again.weight)
    assert torch.equal(first.permutation, again.permutation)
    assert torch.equal(first.images, again.images)
    assert first.weight.dim() == 0 and 0 < first.weight.item() < 1
    assert sorted(first.permutation.tolist()) == list(range(6))
    lam = first.weight
    assert torch.allclose(first.images, lam * images + (1 - lam) * images[first.permutation])


def test_mixup_loss_weights_the_two_label_sets():
    labels = torch.tensor([0, 1, 2])
    batch = mixup.MixedBatch(torch.zeros(3), torch.tensor(0.25), torch.tensor([2, 0, 1]))
    seen = []

    def loss(targets):
        seen.append(targets.tolist())
        return targets.float().sum() + len(seen)  # 4 with y, 5 with y[π]

    assert mixup.mixup_loss(loss, labels, batch).item() == pytest.approx(0.25 * 4 + 0.75 * 5)
    assert seen == [[0, 1, 2], [2, 0, 1]]


@pytest.mark.parametrize("loss", [["--loss", "proxy_anchor"], ["--loss", "multisimilarity"]])
def test_step_loss_is_the_formula_with_the_same_lambda_and_permutation(monkeypatch, loss):
    step = make_step(*loss, "--input_mixup")
    model = copy.deepcopy(step.model)
    criterion = copy.deepcopy(step.criterion)
    draws, mix = [], mixup.mix

    def recording_mix(images):
        batch = mix(images)
        draws.append(batch)
        return batch

    monkeypatch.setattr(mixup, "mix", recording_mix)
    inputs = record_train_inputs(step.model)
    images, labels = digits_batch()
    torch.manual_seed(0)
    terms = step(images, labels)

    assert len(draws) == 1 and step.passes == 2
    batch = draws[0]
    lam, perm = batch.weight, batch.permutation
    mixed = lam * images + (1 - lam) * images[perm]
    assert torch.allclose(batch.images, mixed)
    assert len(inputs) == 2  # both forward passes, in train mode
    assert torch.equal(inputs[0], images) and torch.allclose(inputs[1], mixed)

    clean = criterion(model(images)["embeds"], labels)
    embeds_mixed = model(mixed)["embeds"]
    expected_mixup = lam * criterion(embeds_mixed, labels) + (1 - lam) * criterion(
        embeds_mixed, labels[perm]
    )
    assert set(terms) == {"loss", "loss_mixup"}
    assert terms["loss_mixup"].item() == pytest.approx(expected_mixup.item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx((clean + expected_mixup).item(), rel=1e-5)


def test_without_the_flag_one_pass_and_no_mixup_term():
    step = make_step("--loss", "multisimilarity")
    inputs = record_train_inputs(step.model)
    images, labels = digits_batch()
    terms = step(images, labels)
    assert set(terms) == {"loss"} and step.passes == 1 and len(inputs) == 1


def test_the_flag_is_off_by_default():
    assert parameters.build_parser().parse_args([]).input_mixup is False


@pytest.mark.parametrize(
    "flags",
    [
        ["--defense", "est"],
        ["--defense", "act", "--loss", "triplet", "--batch_mining", "anchor_random"],
        ["--defense", "hm", "--loss", "triplet", "--batch_mining", "anchor_random"],
    ],
)
def test_adversarial_defenses_reject_input_mixup(flags):
    with pytest.raises(ConfigError) as error:
        parameters.parse_args([*flags, "--input_mixup"])
    message = str(error.value)
    assert "--input_mixup" in message and flags[1] in message
    parameters.parse_args(flags)  # fine without it
