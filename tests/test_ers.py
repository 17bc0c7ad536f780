"""Empirical Robustness Score: the formula on hand-made summaries and on the published rows,
``eval.py --ers`` on a file in robrank's swipe format, and the ``ers`` metric key."""

from __future__ import annotations

import json
import random

import pytest
import torch
from torch import nn

import eval as eval_cli
import metrics
from architectures.input_spec import InputSpec
from attacks.profiles import PROFILES, profile
from attacks.runner import AttackRunner
from metrics.ers import ERS_TERMS, ers_score, ers_terms, format_ers_table
from utilities.errors import ConfigError


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small batches of small ops: one torch thread is as fast and does not spin on a loaded
    machine; restored afterwards for the other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TERMS = ("CA+", "CA-", "QA+", "QA-", "TMA", "ES:D", "ES:R", "LTM", "GTM", "GTT")


def reference_ers(raw: dict[str, float]) -> float:
    """robustness.md §3.2 written out: raw values in the units of the published tables."""
    scores = [
        2 * raw["CA+"], 100 - raw["CA-"], 2 * raw["QA+"], 100 - raw["QA-"],
        100 * (1 - raw["TMA"]), 100 * (2 - raw["ES:D"]) / 2, raw["ES:R"], raw["LTM"],
        raw["GTM"], raw["GTT"],
    ]  # fmt: skip
    return sum(scores) / 10


def swipe_from_raw(raw: dict[str, float], eps: str = "0.03137", robrank: bool = False) -> dict:
    """A swipe ``{attack_string: [benign, adversarial]}`` whose adversarial summaries carry the
    raw table values in each key's unit (prank, r@1 and retain@4 as fractions, ES r@1 in
    percent). ``robrank``: as robrank's swipe writes it, with ``loss`` and ``embshift`` in every
    summary and the benign summaries filled."""
    strings = profile("rob224" if eps == "0.03137" else "rob28")
    adversarial = [
        {"CA+:prank": raw["CA+"] / 100}, {"CA-:prank": raw["CA-"] / 100},
        {"QA+:prank": raw["QA+"] / 100}, {"QA-:prank": raw["QA-"] / 100},
        {"Cosine-SIM": raw["TMA"]},
        {"r@1": raw["ES:R"], "r@10": 99.0, "r@100": 100.0, "embshift": raw["ES:D"]},
        {"r@1": raw["LTM"] / 100}, {"r@1": raw["GTM"] / 100},
        {"ID-Retain@1": 0.0, "retain@4": raw["GTT"] / 100},
    ]  # fmt: skip
    swipe = {}
    for string, summary in zip(strings, adversarial, strict=True):
        benign = {key: 0.5 for key in summary}
        if robrank:
            summary = {"loss": 0.25, **summary}
            summary.setdefault("embshift", 0.75)  # robrank adds it to every adversarial summary
            benign = {"loss": 0.5, **benign}
        swipe[string.replace("0.03137", eps)] = [benign, summary]
    return swipe


def raw_row(values: str) -> dict[str, float]:
    return dict(zip(TERMS, map(float, values.split()), strict=True))


@pytest.mark.parametrize("seed", range(5))
def test_ers_of_hand_made_summaries_equals_the_formula(seed):
    rng = random.Random(seed)
    raw = {term: rng.uniform(0, 100) for term in TERMS}
    raw["TMA"], raw["ES:D"] = rng.uniform(-0.2, 1), rng.uniform(0, 2.4)  # unclipped ranges
    terms = ers_terms(swipe_from_raw(raw))
    assert list(terms) == list(TERMS) == list(ERS_TERMS)
    for term in TERMS:
        assert terms[term][0] == pytest.approx(raw[term])
    assert ers_score(terms) == pytest.approx(reference_ers(raw))


# Published raw columns (CA+ CA− QA+ QA− TMA ES:D ES:R LTM GTM GTT) and ERS, robustness.md §3.2/§8.
PUBLISHED = [
    ("CUB N/A", "0.0 100.0 0.0 99.9 0.883 1.762 0.0 0.0 14.1 0.0", "3.8"),
    ("CUB HM&ICS eta=32", "15.5 37.7 16.6 30.9 0.753 0.506 17.9 16.7 27.3 2.9", "36.0"),
    ("SOP HM eta=8", "29.9 4.7 31.6 3.6 0.455 0.283 39.3 40.9 38.8 43.0", "61.7"),
    ("Fashion rc2f2", "1.1 96.8 0.3 97.8 0.990 1.604 0.1 0.0 12.6 0.0", "4.2"),
    ("Fashion rc2f2d", "14.9 36.1 20.9 48.6 0.966 0.288 62.0 28.0 20.8 0.0", "38.7"),
    ("Fashion rc2f2p", "33.6 14.6 38.5 12.1 0.259 0.541 48.5 59.5 60.2 0.1", "63.3"),
]


@pytest.mark.parametrize("name, values, published", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_ers_reproduces_the_published_rows(name, values, published):
    terms = ers_terms(swipe_from_raw(raw_row(values)))
    assert format_ers_table(terms).splitlines()[-1] == f"ERS {published}"


def test_eval_scores_a_swipe_file_in_robranks_format(tmp_path, capsys):
    path = tmp_path / "epoch=7-step=1000.ckpt.rob28.json"
    raw = raw_row(PUBLISHED[0][1])
    path.write_text(json.dumps(swipe_from_raw(raw, eps="0.30196", robrank=True), indent=2))
    assert eval_cli.main(["--ers", str(path)]) == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[-1] == "ERS 3.8"
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:-1]}
    assert list(rows) == list(TERMS)
    assert float(rows["ES:D"][0]) == pytest.approx(1.762)  # ES's embshift, not another entry's
    assert float(rows["GTM"][1]) == pytest.approx(14.1)


def test_ers_needs_all_ten_terms():
    swipe = swipe_from_raw(raw_row(PUBLISHED[0][1]))
    del swipe[next(s for s in swipe if s.startswith("GTT"))]
    with pytest.raises(ConfigError, match="has no GTT result"):
        ers_terms(swipe)


class TinyEmbedder(nn.Module):
    """A linear embedding of 1×28×28 images with the architecture interface."""

    input_spec = InputSpec(28, 1, (0.0,), (1.0,))

    def __init__(self) -> None:
        super().__init__()
        self.last_linear = nn.Linear(28 * 28, 8)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        embeds = self.last_linear(x.flatten(1))
        return {"embeds": embeds, "features": embeds}


class TinySplit(torch.utils.data.Dataset):
    def __init__(self, n: int = 24) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 1, 28, 28, generator=generator)
        self.labels = (torch.arange(n) % 4).numpy()
        self.query = self.gallery = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i]), i


def test_ers_metric_key_runs_the_rob28_swipe_with_the_seed(monkeypatch):
    # the profile shortened to 2 PGD steps: the test checks the plumbing, not the attacks
    short = [s.replace("pgditer=32", "pgditer=2") for s in profile("rob28")]
    monkeypatch.setitem(PROFILES, "rob28", short)
    torch.manual_seed(0)
    model, split = TinyEmbedder(), TinySplit()
    with torch.no_grad():
        embeds = model(split.images)["embeds"]
    evaluator = metrics.Evaluator(["ers", "e_recall@1"], kmeans_seed=5)
    first = evaluator.compute(embeds, split.labels, model=model, dataset=split)
    again = evaluator.compute(embeds, split.labels, model=model, dataset=split)
    assert first == again and 0.0 <= first["ers"] <= 120.0
    runner = AttackRunner(model, split, device=torch.device("cpu"), seed=5, progress=False)
    assert first["ers"] == pytest.approx(ers_score(ers_terms(runner.swipe(short))))
    with pytest.raises(ConfigError, match="ers@profile"):
        metrics.build_metrics(["ers@rob"])
    assert metrics.build_metrics(["ers@rob224"])[0].key == "ers@rob224"
