"""The Proxy-Anchor / IDML / DADA recipe pieces: optimizers, schedules over every optimizer,
gradient value clipping, the warm-up and BatchNorm affine freezing, the shuffle sampler and the
model-selection rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import architectures
import criteria
import datasampler
import defenses
import parameters
from tests.test_defenses import digits_batch
from utilities import selection
from utilities.errors import ConfigError
from utilities.optimization import Schedules, build_optimizer
from utilities.precision import Precision


def options(*flags: str, n_classes: int = 10):
    opt, _ = parameters.parse_args(["--num_workers", "0", *flags])
    opt.n_classes = n_classes
    return opt


def make_step(*flags: str, seed: int = 0, n_classes: int = 10) -> defenses.TrainingStep:
    opt = options(*flags, n_classes=n_classes)
    torch.manual_seed(seed)
    model = architectures.build(opt)
    criterion = criteria.build(opt)
    optimizer = build_optimizer(opt, model, criterion)
    return defenses.build(opt, model, criterion, optimizer, Precision(False, torch.device("cpu")))


def learning_rates(schedules: Schedules, optimizers, epochs: int) -> list[list[float]]:
    rates = []
    for epoch in range(1, epochs + 1):
        rates.append([o.param_groups[0]["lr"] for o in optimizers])
        for optimizer in optimizers:
            optimizer.step()  # no gradient: nothing moves; the schedule expects a step first
        schedules.step(epoch)
    return rates


def two_optimizers() -> list[torch.optim.Optimizer]:
    return [
        torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0),
        torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.5),
    ]


@pytest.mark.parametrize(
    ("flags", "factors"),
    [
        (["--scheduler", "steplr", "--lr_decay_step", "2", "--gamma", "0.5"],
         [1, 1, 0.5, 0.5, 0.25, 0.25]),
        (["--scheduler", "multistep", "--tau", "1", "4", "--gamma", "0.1"],
         [1, 0.1, 0.1, 0.1, 0.01, 0.01]),
        (["--scheduler", "step", "--tau", "2", "--gamma", "0.5"], [1, 1, 0.5, 0.5, 0.5, 0.5]),
        (["--scheduler", "linear", "--lr_linear_start", "1", "--lr_linear_end", "0.2",
          "--lr_linear_length", "4"], [1, 0.8, 0.6, 0.4, 0.2, 0.2]),
        (["--scheduler", "none"], [1] * 6),
    ],
)  # fmt: skip
def test_every_optimizer_follows_the_schedule(flags, factors):
    optimizers = two_optimizers()
    rates = learning_rates(Schedules(options(*flags), optimizers), optimizers, len(factors))
    for got, factor in zip(rates, factors, strict=True):
        assert got == pytest.approx([1.0 * factor, 0.5 * factor])


def test_scheduler_after_warmup_holds_the_rate_through_the_warmup():
    optimizers = two_optimizers()
    opt = options("--scheduler", "steplr", "--lr_decay_step", "1", "--gamma", "0.5",
                  "--scheduler_after_warmup")  # fmt: skip
    rates = learning_rates(Schedules(opt, optimizers, warmup_epochs=2), optimizers, 5)
    assert [r[0] for r in rates] == pytest.approx([1, 1, 1, 0.5, 0.25])
    optimizers = two_optimizers()
    opt = options("--scheduler", "steplr", "--lr_decay_step", "1", "--gamma", "0.5")
    rates = learning_rates(Schedules(opt, optimizers, warmup_epochs=2), optimizers, 3)
    assert [r[0] for r in rates] == pytest.approx([1, 0.5, 0.25])  # PA: steps through it


def test_schedules_resume_their_state():
    optimizers = two_optimizers()
    opt = options("--scheduler", "steplr", "--lr_decay_step", "1", "--gamma", "0.5")
    first = Schedules(opt, optimizers)
    learning_rates(first, optimizers, 2)
    again = two_optimizers()
    second = Schedules(opt, again)
    for optimizer, saved in zip(again, optimizers, strict=True):
        optimizer.load_state_dict(saved.state_dict())
    second.load_state_dict(first.state_dict())
    assert learning_rates(second, again, 3) == learning_rates(first, optimizers, 3)
    assert [o.param_groups[0]["lr"] for o in again] == [o.param_groups[0]["lr"] for o in optimizers]


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_optimizer_choice(name):
    opt = options("--optim", name, "--loss", "proxy_anchor")
    model, criterion = architectures.build(opt), criteria.build(opt)
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name]
    optimizer = build_optimizer(opt, model, criterion)
    assert type(optimizer) is kind
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert {id(p) for p in model.parameters()} | {id(criterion.proxies)} == held


def test_gradient_values_are_clipped_before_the_step():
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    loss = (weight * torch.tensor([100.0, -0.5, -30.0])).sum()
    Precision(False, torch.device("cpu")).backward_and_step(loss, optimizer, clip_value=10.0)
    assert weight.grad.tolist() == [10.0, -0.5, -10.0]
    assert weight.detach().tolist() == [1.0 - 10.0, -2.0 + 0.5, 3.0 + 10.0]


def parameters_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if not torch.equal(before[n], p.detach())}


def test_warmup_trains_only_the_head_and_the_proxies():
    step = make_step("--loss", "proxy_anchor", "--warmup_epochs", "1", "--n_epochs", "2")
    images, labels = digits_batch()
    model, proxies = step.model, step.criterion.proxies
    step.begin_epoch(1)
    before, proxies_before = parameters_of(model), proxies.detach().clone()
    step(images, labels)
    assert changed(before, model) == {"last_linear.weight", "last_linear.bias"}
    assert not torch.equal(proxies_before, proxies.detach())
    step.begin_epoch(2)
    before = parameters_of(model)
    step(images, labels)
    assert changed(before, model) == set(before)  # after the warm-up: everything


def test_warmup_freezes_the_idml_uncertainty_head_too():
    step = make_step("--loss", "proxy_anchor", "--idml", "--warmup_epochs", "1", "--n_epochs", "2")
    images, labels = digits_batch()
    step.begin_epoch(1)
    before = parameters_of(step.model)
    step(images, labels)
    assert changed(before, step.model) == {"last_linear.weight", "last_linear.bias"}
    step.begin_epoch(2)
    before = parameters_of(step.model)
    step(images, labels)
    assert {"uncertainty_head.weight", "uncertainty_head.bias"} <= changed(before, step.model)


def bn_step(*flags: str) -> defenses.TrainingStep:
    return make_step("--arch", "resnet18", "--not_pretrained", "--loss", "proxy_anchor",
                     "--warmup_epochs", "1", "--n_epochs", "3", *flags)  # fmt: skip


def bn_affine_changes(step: defenses.TrainingStep, epoch: int) -> tuple[bool, bool]:
    """(some BN affine parameter changed, some convolution changed) by one step of ``epoch``."""
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(epoch))
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    step.begin_epoch(epoch)
    before = parameters_of(step.model)
    step(images, labels)
    moved = changed(before, step.model)
    bn = {n for n, m in step.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    affine = {n for n in moved if n.rsplit(".", 1)[0] in bn}
    convs = {n for n in moved if "conv" in n}
    return bool(affine), bool(convs)


def test_bn_affine_trains_unless_frozen_and_warmup_freezes_it_meanwhile():
    step = bn_step()
    assert bn_affine_changes(step, 1) == (False, False)
    assert bn_affine_changes(step, 2) == (True, True)


def test_freeze_bn_affine_holds_for_the_whole_run():
    step = bn_step("--freeze_bn_affine")
    assert bn_affine_changes(step, 1) == (False, False)
    assert bn_affine_changes(step, 2) == (False, True)
    assert bn_affine_changes(step, 3) == (False, True)


def test_warmup_unfreezes_bn_affine_reproduces_the_reference():
    step = bn_step("--freeze_bn_affine", "--warmup_unfreezes_bn_affine")
    assert bn_affine_changes(step, 1) == (False, False)
    assert bn_affine_changes(step, 2) == (True, True)


def test_warmup_unfreezes_bn_affine_needs_its_settings():
    with pytest.raises(ConfigError, match="--warmup_unfreezes_bn_affine.*--freeze_bn_affine"):
        options("--warmup_unfreezes_bn_affine", "--warmup_epochs", "1")
    with pytest.raises(ConfigError, match="--warmup_epochs > 0"):
        options("--warmup_unfreezes_bn_affine", "--freeze_bn_affine")


def test_shuffle_sampler_is_a_seeded_shuffled_pass():
    labels = np.repeat(np.arange(7), 5)
    opt = options("--data_sampler", "shuffle", "--bs", "6", "--seed", "4")
    sampler = datasampler.build(opt, labels)
    epoch = list(sampler)
    assert len(epoch) == len(sampler) == 35 // 6
    flat = [i for batch in epoch for i in batch]
    assert all(len(b) == 6 for b in epoch) and len(set(flat)) == len(flat) == 30
    state = sampler.state_dict()
    following = list(sampler)
    assert following != epoch
    again = datasampler.build(opt, labels)
    again.load_state_dict(state)
    assert list(again) == following
    assert list(datasampler.build(opt, labels)) == epoch


HISTORY = {
    "Test": {"epoch": [1, 2, 3], "e_recall@1": [0.5, 0.7, 0.6], "nmi": [0.1, 0.2, 0.3]},
    "Val": {"epoch": [1, 2, 3], "e_recall@1": [0.9, 0.4, 0.3], "nmi": [0.0, 0.0, 0.0]},
}


@pytest.mark.parametrize(
    ("rule", "epoch", "test_r1"), [("last", 3, 0.6), ("val", 1, 0.5), ("test", 2, 0.7)]
)
def test_selection_rules(rule, epoch, test_r1):
    chosen = selection.selected(HISTORY, rule, "e_recall@1", True)
    assert (chosen["epoch"], chosen["test"]["e_recall@1"]) == (epoch, test_r1)
    assert ("note" in chosen) == (rule == "test")


def test_selection_auto_and_val_without_a_split():
    assert selection.rule(options()) == "last"
    assert selection.rule(options("--use_tv_split")) == "val"
    with pytest.raises(ConfigError, match="--model_selection.*--use_tv_split"):
        options("--model_selection", "val")


def test_test_selection_is_marked_in_the_summary_and_the_output(tmp_path, capsys):
    import json

    import main

    main.train(["--num_workers", "0", "--savename", "run", "--save_path", str(tmp_path),
                "--n_epochs", "2", "--no_train_metrics", "--model_selection", "test",
                "--evaluation_metrics", "e_recall@1", "mAP_R"])  # fmt: skip
    summary = json.loads((tmp_path / "digits" / "run" / "training_summary.json").read_text())
    chosen = summary["selection"]
    assert chosen["rule"] == "test" and "TEST split" in chosen["note"]
    best = summary["splits"]["Test"]["best"]["e_recall@1"]
    assert chosen["epoch"] == best["epoch"]
    assert math.isclose(chosen["test"]["e_recall@1"], best["value"])
    assert "reproduction only" in capsys.readouterr().out
