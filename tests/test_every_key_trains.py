"""Acceptance: every registered loss, batch miner and batch sampler trains on digits from main.py.

The cases are generated from the registries at collection time, so components added later are
covered without editing this file. Each case is one short ``main.train`` run (one epoch, a few
steps) that names the keys it covers; together the cases cover every key of the three
registries (checked by ``test_the_cases_cover_every_key``). Each run must finish with finite
test metrics and must have changed the network's weights and the loss's own parameters (with
``--decay 0``, so only a non-zero gradient can move them).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import pytest
import torch

import architectures
import criteria
import main
import parameters
from batch_mining import MINERS
from criteria import CRITERIA
from datasampler import SAMPLERS
from utilities.checkpoint import load_checkpoint

DEFAULT_MINER = "distance"  # the --batch_mining default
DEFAULT_SAMPLER = "class_random"  # the --data_sampler default

# The cheapest settings that still train: one epoch of 6 steps (1,201 digits // 200), no train
# metrics, one cheap test metric, no weight decay (so unchanged weights mean no gradient).
FAST = [
    "--n_epochs", "1", "--bs", "200", "--num_workers", "0", "--no_train_metrics",
    "--evaluation_metrics", "e_recall@1", "--storage_metrics", "e_recall@1",
    "--decay", "0", "--savename", "run",
]  # fmt: skip


# A loss whose first epochs train only its discriminators (DADA's d_warmup) trains the network
# from the first epoch here.
LOSS_FLAGS = {"dadaproxy": ["--loss_dadaproxy_d_warmup", "0"]}


class Case(NamedTuple):
    loss: str
    miner: str | None
    sampler: str

    @property
    def id(self) -> str:
        miner = f"+{self.miner}" if self.miner else ""
        return f"{self.loss}{miner}@{self.sampler}"


def default_miner(loss: str) -> str | None:
    """The miner a loss trains with by default: ``distance`` when allowed, else its first."""
    loss_class = CRITERIA.get(loss)
    if not loss_class.requires_batchminer:
        return None
    allowed = loss_class.allowed_miners
    return DEFAULT_MINER if DEFAULT_MINER in allowed else sorted(allowed)[0]


def training_cases() -> list[Case]:
    """A small set of runs covering every loss, every miner and every sampler key.

    Every loss gets one run, with the first miner not yet covered among its default miner and
    then its other allowed miners; miners left over get a run with the first loss that allows
    them. Samplers other than the default replace it in the first runs (then extra runs).
    """
    uncovered = set(MINERS.keys())
    cases = []
    for loss in CRITERIA:
        miner = default_miner(loss)
        if miner is not None:
            preferred = [miner, *sorted(CRITERIA.get(loss).allowed_miners)]
            miner = next((key for key in preferred if key in uncovered), miner)
            uncovered.discard(miner)
        cases.append(Case(loss, miner, DEFAULT_SAMPLER))
    for miner in sorted(uncovered):
        losses = [key for key in CRITERIA if miner in CRITERIA.get(key).allowed_miners]
        if losses:  # a miner no loss accepts cannot train: test_the_cases_cover_every_key fails
            cases.append(Case(losses[0], miner, DEFAULT_SAMPLER))
    samplers = [key for key in SAMPLERS if key != DEFAULT_SAMPLER]
    for index, sampler in enumerate(samplers):
        if index < len(cases):
            cases[index] = cases[index]._replace(sampler=sampler)
        else:
            cases.append(Case("margin", DEFAULT_MINER, sampler))
    return cases


CASES = training_cases()


def test_the_cases_cover_every_key():
    assert {c.loss for c in CASES} == set(CRITERIA)
    assert {c.miner for c in CASES if c.miner} == set(MINERS.keys()), "a miner no loss accepts"
    assert {c.sampler for c in CASES} == set(SAMPLERS)
    for case in CASES:
        allowed = CRITERIA.get(case.loss).allowed_miners
        assert case.miner is None or case.miner in allowed, case


def record_initial_state(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, torch.Tensor]]:
    """Wrap the model and loss factories main.train calls, keeping copies of their fresh weights."""
    initial: dict[str, dict[str, torch.Tensor]] = {}
    build_model, build_criterion = architectures.build, criteria.build

    def model_factory(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = build_model(*args, **kwargs)
        initial["model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return model

    def criterion_factory(*args: Any, **kwargs: Any) -> torch.nn.Module:
        criterion = build_criterion(*args, **kwargs)
        trained = {id(p) for group in criterion.param_groups() for p in group["params"]}
        initial["criterion"] = {
            name: p.detach().clone() for name, p in criterion.named_parameters() if id(p) in trained
        }
        return criterion

    monkeypatch.setattr(architectures, "build", model_factory)
    monkeypatch.setattr(criteria, "build", criterion_factory)
    return initial


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    return [name for name, value in before.items() if not torch.equal(value, after[name].cpu())]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_key_trains_on_digits(case: Case, tmp_path, monkeypatch):
    initial = record_initial_state(monkeypatch)
    flags = [*FAST, "--save_path", str(tmp_path), "--loss", case.loss]
    flags += ["--data_sampler", case.sampler, *LOSS_FLAGS.get(case.loss, [])]
    if case.miner:
        flags += ["--batch_mining", case.miner]
    final = main.train(flags)

    assert set(final) == {"e_recall@1"}
    assert all(math.isfinite(value) for value in final.values()), final
    checkpoint = load_checkpoint(tmp_path / "digits" / "run" / "checkpoint_last.pth", "test")
    assert checkpoint["options"]["loss"] == case.loss
    assert checkpoint["options"]["data_sampler"] == case.sampler
    moved = changed(initial["model"], checkpoint["model"])
    assert {"last_linear.weight", "backbone.0.weight"} <= set(moved), f"moved only {moved}"
    unchanged = set(initial["criterion"]) - set(
        changed(initial["criterion"], checkpoint["criterion"])
    )
    assert not unchanged, f"loss parameters not trained: {sorted(unchanged)}"


def test_defaults_match_the_flags():
    opt = parameters.build_parser().parse_args([])
    assert (opt.batch_mining, opt.data_sampler) == (DEFAULT_MINER, DEFAULT_SAMPLER)
    for key, loss in CRITERIA.items():
        assert (default_miner(key) in loss.allowed_miners) == loss.requires_batchminer, key


def test_loss_benchmark_measures_every_loss(capsys):
    """benchmarks/loss_step.py runs (tiny sizes) and prints one timed row per registered loss."""
    from benchmarks import loss_step

    assert loss_step.main(["--bs", "12", "--dim", "8", "--n_classes", "10", "--warmup", "0",
                           "--repeats", "1", "--device", "cpu", "--threads", "0"]) == 0  # fmt: skip
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line[:3] == "| `"]
    measured = {row[1].strip(" `") for row in rows}
    assert measured == set(CRITERIA)
    for row in rows:  # "median / min" in each timing and ratio column
        ours = [float(value) for value in row[3].split("/")]
        assert all(math.isfinite(value) and value > 0 for value in ours) and ours[0] >= ours[1]
        if row[5].strip() != "—":
            theirs = [float(value) for value in row[5].split("/")]
            ratios = [float(value) for value in row[6].split("/")]
            expected = [mine / pml for mine, pml in zip(ours, theirs, strict=True)]
            assert ratios == pytest.approx(expected, rel=0.05, abs=0.01), row
