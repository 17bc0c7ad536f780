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

pytestmark = pytest.mark.usefixtures("one_thread")


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


# CVPR'22 Table "sota" (robustness.md §8.3): every row's ten raw columns and its ERS. The columns
# are printed rounded (prank and R@1 to 0.1, TMA and ES:D to 0.001), so the ERS recomputed from
# them may differ from the published one, computed from the unrounded values, by rounding only.
SOTA = [
    ("CUB N/A[R]", "0.0 100.0 0.0 99.9 0.883 1.762 0.0 0.0 14.1 0.0", 3.8),
    ("CUB EST[R] η=8", "0.5 97.3 0.5 91.3 0.875 1.325 3.9 0.4 14.9 0.0", 7.9),
    ("CUB ACT[R] η=8", "13.7 46.8 12.6 39.3 0.547 0.902 13.6 9.8 21.9 1.3", 31.3),
    ("CUB HM η=8", "12.7 46.4 11.6 39.9 0.567 0.783 16.8 11.9 27.9 1.4", 32.4),
    ("CUB HM&ICS η=8", "12.9 40.9 14.7 33.7 0.806 0.487 17.1 13.2 26.3 2.3", 33.5),
    ("CUB EST[R] η=32", "2.7 97.9 0.4 97.3 0.848 1.576 1.4 0.0 4.0 0.0", 5.3),
    ("CUB ACT[R] η=32", "15.5 37.7 15.1 32.2 0.472 0.821 11.1 9.4 14.9 1.0", 33.9),
    ("CUB HM η=32", "14.7 39.6 15.6 34.2 0.523 0.736 16.5 15.0 26.7 2.9", 35.9),
    ("CUB HM&ICS η=32", "15.5 37.7 16.6 30.9 0.753 0.506 17.9 16.7 27.3 2.9", 36.0),
    ("CARS N/A[R]", "0.2 100.0 0.1 99.6 0.874 1.816 0.0 0.0 13.4 0.0", 3.6),
    ("CARS EST[R] η=8", "0.1 99.9 0.1 98.1 0.902 1.681 0.7 0.2 15.4 0.0", 4.4),
    ("CARS ACT[R] η=8", "19.3 33.1 20.3 32.3 0.413 0.760 18.4 15.0 28.6 1.2", 39.8),
    ("CARS HM η=8", "15.3 32.0 17.9 33.9 0.463 0.653 23.4 28.5 44.6 5.8", 42.4),
    ("CARS HM&ICS η=8", "21.0 23.3 23.1 22.2 0.698 0.415 31.2 38.0 47.8 9.6", 47.9),
    ("CARS EST[R] η=32", "1.2 98.1 0.4 91.8 0.880 1.281 2.9 0.7 8.2 0.0", 7.3),
    ("CARS ACT[R] η=32", "18.0 32.3 17.5 30.5 0.383 0.763 16.3 15.3 20.7 1.6", 38.6),
    ("CARS HM η=32", "17.4 28.2 18.2 28.8 0.426 0.613 27.1 30.7 42.3 7.9", 44.9),
    ("CARS HM&ICS η=32", "19.3 25.9 19.6 25.7 0.650 0.446 30.3 36.7 46.0 8.8", 46.0),
    ("SOP N/A[R]", "0.1 99.3 0.2 99.1 0.845 1.685 0.0 0.0 6.3 0.0", 4.0),
    ("SOP EST[R] η=8", "6.4 69.7 3.9 64.6 0.611 1.053 3.8 2.2 10.2 1.3", 19.0),
    ("SOP ACT[R] η=8", "24.8 10.7 25.4 8.2 0.321 0.485 15.4 17.7 25.1 11.3", 49.5),
    ("SOP HM η=8", "29.9 4.7 31.6 3.6 0.455 0.283 39.3 40.9 38.8 43.0", 61.7),
    ("SOP HM&ICS η=8", "32.5 4.8 32.4 3.5 0.586 0.239 38.6 39.8 38.3 44.5", 61.2),
    ("SOP EST[R] η=32", "12.5 43.6 10.6 34.8 0.468 0.830 9.6 7.2 17.3 3.8", 31.7),
    ("SOP ACT[R] η=32", "24.1 10.5 22.7 9.4 0.253 0.532 21.2 21.6 27.8 15.3", 50.8),
    ("SOP HM η=32", "30.6 4.7 31.2 3.5 0.466 0.266 38.6 40.3 38.6 44.3", 61.8),
    ("SOP HM&ICS η=32", "32.0 4.2 33.7 3.0 0.606 0.207 39.1 39.8 37.9 45.6", 61.6),
]


@pytest.mark.parametrize("name, values, published", SOTA, ids=[row[0] for row in SOTA])
def test_ers_reproduces_every_row_of_the_cvpr_table_to_its_rounding(name, values, published):
    raw = raw_row(values)
    assert ers_score(ers_terms(swipe_from_raw(raw))) == pytest.approx(published, abs=0.11)
    assert reference_ers(raw) == pytest.approx(ers_score(ers_terms(swipe_from_raw(raw))))


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
