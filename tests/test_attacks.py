"""attacks/: the PGD engine, the attack-string grammar, the profiles, and every attack's targets,
objective and reported metrics against slow per-item reference loops on synthetic embeddings."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import attacks
import datasets
from attacks.base import CandidateSet
from attacks.gtm import gtm_target
from attacks.pgd import pgd
from attacks.profiles import PROFILES, profile
from utilities.errors import ConfigError

ROB28 = "eps=0.30196:alpha=0.011764:pgditer=32"


# ---------------------------------------------------------------- PGD engine
@pytest.mark.parametrize("steps", [1, 2, 7])
@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_stays_in_the_eps_ball_and_the_unit_box(steps, random_start):
    torch.manual_seed(0)
    images = torch.rand(6, 3, 5, 5)
    images[0] = 0.0
    images[1] = 1.0
    weights = torch.randn(3 * 25)
    eps, alpha = 0.1, 0.04
    result = pgd(
        lambda x: (x.flatten(1) @ weights).sum(),
        images,
        eps=eps,
        alpha=alpha,
        steps=steps,
        random_start=random_start,
        generator=torch.Generator().manual_seed(1),
    )
    adv = result.adversarial
    assert (adv - images).abs().max() <= eps + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    if not random_start:
        # a linear loss: every pixel moves against its weight by min(steps·step, ε), then clips
        step = eps if steps == 1 else alpha
        direction = -weights.sign().view(1, 3, 5, 5)
        expected = (images + direction * min(steps * step, eps)).clamp(0, 1)
        assert torch.allclose(adv, expected, atol=1e-6)
        assert float((adv.flatten(1) @ weights).sum()) < float((images.flatten(1) @ weights).sum())


def test_pgd_penultimate_iterate_and_zero_steps():
    images = torch.rand(2, 1, 4, 4)
    weights = torch.randn(16)
    loss = lambda x: (x.flatten(1) @ weights).sum()  # noqa: E731
    one = pgd(loss, images, eps=0.2, alpha=0.05, steps=1)
    assert torch.equal(one.penultimate, images)
    three = pgd(loss, images, eps=0.2, alpha=0.05, steps=3)
    two = pgd(loss, images, eps=0.2, alpha=0.05, steps=2)
    assert torch.allclose(three.penultimate, two.adversarial)
    none = pgd(loss, images, eps=0.2, alpha=0.05, steps=0)
    assert torch.equal(none.adversarial, images)


def test_pgd_early_stop_when_the_loss_stops_changing():
    images = torch.rand(2, 1, 4, 4)
    weights = torch.randn(16)
    # A loss that saturates at 0: once every pixel sits on its bound the loss no longer changes.
    saturating = lambda x: (x.flatten(1) @ weights).clamp(min=-0.5).sum()  # noqa: E731
    full = pgd(saturating, images, eps=0.3, alpha=0.1, steps=20)
    stopped = pgd(saturating, images, eps=0.3, alpha=0.1, steps=20, stop_tolerance=1e-7)
    assert full.iterations == 20 and stopped.iterations < 20
    assert torch.equal(stopped.adversarial, full.adversarial)  # nothing moved after the stop
    constant = pgd(lambda x: x.sum() * 0, images, eps=0.3, alpha=0.1, steps=9, stop_tolerance=1e-7)
    assert constant.iterations == 2  # the second iteration repeats the first loss


def test_pgd_random_start_is_seeded():
    images = torch.rand(2, 1, 4, 4)
    runs = [
        pgd(lambda x: x.sum() * 0, images, eps=0.1, alpha=0.01, steps=1, random_start=True,
            generator=torch.Generator().manual_seed(seed)).adversarial
        for seed in (3, 3, 4)
    ]  # fmt: skip
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


# ---------------------------------------------------------------- grammar and profiles
def test_reference_attack_strings_parse_unchanged():
    spec = attacks.parse_attack_string("CA:pm=+:W=1:eps=0.30196:alpha=0.011764:pgditer=32")
    assert (spec.type, spec.pm, spec.W, spec.eps, spec.alpha, spec.pgditer) == (
        "CA", "+", 1, 0.30196, 0.011764, 32
    )  # fmt: skip
    defaults = attacks.parse_attack_string("ES")
    assert defaults.eps == pytest.approx(4 / 255) and defaults.alpha == pytest.approx(1 / 255)
    assert defaults.pgditer == 24 and not defaults.rinit
    assert attacks.parse_attack_string("QA:pm=-:M=5:rinit=1").rinit
    for strings in PROFILES.values():
        for string in strings:
            assert attacks.parse_attack_string(string).string == string


@pytest.mark.parametrize(
    "string, fragment",
    [
        ("XX:eps=0.1", "unknown attack 'XX'"),
        ("qa:pm=+:M=1", "did you mean 'QA'"),
        ("CA:pm=+", "CA with W= given"),
        ("QA:M=1", "QA with pm= given"),
        ("CA:pm=*:W=1", "key=value pairs"),
        ("QA:pm=+:M=0", "M= an integer >= 1"),
        ("ES:eps=abc", "eps= a finite number >= 0 and <= 1"),
        ("ES:eps=nan", "eps= a finite number >= 0 and <= 1, got 'nan'"),
        ("ES:eps=2", "eps= a finite number >= 0 and <= 1, got '2'"),
        ("ES:alpha=inf", "alpha= a finite number > 0 and <= 1"),
        ("ES:W=2", "keys of ES among"),
        ("ES:eps=0.1:eps=0.2", "each key once"),
        ("ES:alpha=0", "alpha= a finite number > 0"),
        ("ES:rinit=2", "rinit= an integer >= 0 and <= 1"),
        ("CA pm=+", "TYPE:key=val"),
    ],
)
def test_bad_attack_strings_give_one_line_errors(string, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        attacks.parse_attack_string(string)
    assert str(info.value).startswith("--attack") and "\n" not in str(info.value)


def reference_profiles() -> dict[str, list[str]]:
    """robrank's ``cmdline.Swipe.profile_*`` tuples, built the way robrank builds them
    (``':'.join`` over ``itertools.product``), so a typo in a string shows."""
    join = lambda *parts: [":".join(x) for x in itertools.product(*parts)]  # noqa: E731
    pms, ws, ms = ("pm=+", "pm=-"), ("W=1", "W=2", "W=5", "W=10"), ("M=1", "M=2", "M=5", "M=10")
    eccv28 = ("eps=0.01:alpha=0.003922:pgditer=10", "eps=0.03:alpha=0.003922:pgditer=15",
              "eps=0.1:alpha=0.01:pgditer=20", "eps=0.3:alpha=0.01:pgditer=30")  # fmt: skip
    eccv224_ca = ("eps=0.01:alpha=0.003922:pgditer=24", "eps=0.03:alpha=0.003922:pgditer=15",
                  "eps=0.06:alpha=0.006:pgditer=20")  # fmt: skip
    eccv224_spqa = ("eps=0.01:alpha=0.003922:pgditer=10", "eps=0.03:alpha=0.003922:pgditer=15",
                    "eps=0.06:alpha=0.006:pgditer=20")  # fmt: skip
    pami28 = ("eps=0.03137:alpha=0.003922:pgditer=32", "eps=0.30196:alpha=0.011764:pgditer=32")
    pami224 = ("eps=0.00784:alpha=0.003922:pgditer=32", "eps=0.03137:alpha=0.011764:pgditer=32")

    def rob(eps: str) -> list[str]:
        tail = (f"eps={eps}:alpha=0.011764:pgditer=32",)
        return (join(("CA",), pms, ("W=1",), tail) + join(("QA",), pms, ("M=1",), tail)
                + join(("TMA", "ES", "LTM", "GTM", "GTT"), tail))  # fmt: skip

    curve = [f"eps={7 * i / 255.0:.5f}:alpha={max(1, np.round(i * 7 / 25)) / 255.0:.5f}:pgditer=32"
             for i in range(0, 11 + 1)]  # fmt: skip
    return {
        "rob28": rob("0.30196"),
        "rob224": rob("0.03137"),
        "cvpr": rob("0.03137"),
        "pami28": join(("SPQA",), pms, ms, pami28) + join(("CA",), pms, ws, pami28),
        "pami224": join(("SPQA",), pms, ms, pami224) + join(("CA",), pms, ws, pami224),
        "eccv28": join(("CA",), pms, ws, eccv28) + join(("SPQA",), pms, ms, eccv28),
        "eccv224": join(("CA",), pms, ws, eccv224_ca) + join(("SPQA",), pms, ms, eccv224_spqa),
        "qccurve28": join(("CA",), pms, ("W=1",), curve) + join(("SPQA",), pms, ("M=1",), curve),
    }


def test_profiles_have_the_reference_content():
    assert reference_profiles() == PROFILES  # every string, in robrank's order
    sizes = {"rob28": 9, "rob224": 9, "cvpr": 9, "pami28": 32, "pami224": 32, "eccv28": 64,
             "eccv224": 48, "qccurve28": 48}  # fmt: skip
    assert {name: len(strings) for name, strings in PROFILES.items()} == sizes
    assert profile("rob28") == [
        f"CA:pm=+:W=1:{ROB28}", f"CA:pm=-:W=1:{ROB28}", f"QA:pm=+:M=1:{ROB28}",
        f"QA:pm=-:M=1:{ROB28}", f"TMA:{ROB28}", f"ES:{ROB28}", f"LTM:{ROB28}", f"GTM:{ROB28}",
        f"GTT:{ROB28}",
    ]  # fmt: skip
    assert (
        profile("cvpr")
        == profile("rob224")
        == [s.replace("0.30196", "0.03137") for s in profile("rob28")]
    )
    # qccurve28: robrank's step grows with ε (1/255 up to i = 5, then 2/255, then 3/255)
    assert profile("qccurve28")[1] == "CA:pm=+:W=1:eps=0.02745:alpha=0.00392:pgditer=32"
    assert profile("qccurve28")[-1] == "SPQA:pm=-:M=1:eps=0.30196:alpha=0.01176:pgditer=32"
    eps = {attacks.parse_attack_string(s).eps for s in profile("qccurve28")}
    assert sorted(eps) == [float(f"{7 * i / 255:.5f}") for i in range(12)]
    with pytest.raises(ConfigError, match="--swipe: unknown profile 'rob'"):
        profile("rob")


# ---------------------------------------------------------------- synthetic ranking state
def make_state(n=40, d=6, classes=4, seed=0, masks=False, metric="N"):
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(n, d, generator=generator)
    embeds = embeds if metric == "E" else F.normalize(embeds, dim=1)
    labels = torch.randint(classes, (n,), generator=generator)
    if masks:
        query_index, gallery_index = torch.arange(0, n // 2), torch.arange(n // 4, n)
    else:
        query_index = gallery_index = torch.arange(n)
    cands = CandidateSet(embeds, labels, query_index, gallery_index, metric, "digits")
    return cands, generator


def slow_distance(a, b, metric="N"):
    if metric == "C":
        return 1.0 - float((a * b).sum())
    return math.sqrt(float(((a - b) ** 2).sum()))


def attacked(cands, attack, count=8, seed=1, metric="N"):
    """(batch, targets, adversarial embeddings) for the first ``count`` attacked items."""
    items = cands.gallery_index if attack.perturbs == "candidate" else cands.query_index
    index = items[:count]
    batch = cands.batch(torch.zeros(count, 1, 2, 2), index)
    targets = attack.select(batch, cands, torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed + 1)
    noisy = batch.clean + 0.5 * torch.randn(batch.clean.shape, generator=generator)
    adv = noisy if metric == "E" else F.normalize(noisy, dim=1)
    return batch, targets, adv


def own_position(cands, item):
    matches = (cands.gallery_index == item).nonzero()
    return int(matches[0]) if len(matches) else None


@pytest.mark.parametrize("masks", [False, True])
@pytest.mark.parametrize("pm", ["+", "-"])
@pytest.mark.parametrize("metric", ["N", "C"])
def test_ca_targets_objective_and_prank_match_reference(masks, pm, metric):
    cands, _ = make_state(masks=masks, metric=metric)
    attack = attacks.build(f"CA:pm={pm}:W=3")
    batch, targets, adv = attacked(cands, attack, metric=metric)
    queries = targets["queries"]
    gallery = cands.gallery
    for i, item in enumerate(batch.index.tolist()):
        if pm == "-":  # targets among the top-1% (here 1) nearest queries, c itself excluded
            pool = sorted(
                (slow_distance(cands.embeds[item], q, metric), j)
                for j, q in zip(cands.query_index.tolist(), cands.queries, strict=True)
                if j != item
            )[:1]
            allowed = {j for _, j in pool}
            for w in range(3):
                j = next(j for j in allowed if torch.equal(cands.embeds[j], queries[i, w]))
                assert j in allowed
    for name, emb in (("benign", batch.clean), ("adversarial", adv)):
        got = attack.measure(emb, batch, cands, targets)[f"CA{pm}:prank"]
        for i in range(len(batch.index)):
            ranks = []
            for w in range(3):
                d_c = slow_distance(emb[i], queries[i, w], metric)
                ranks.append(
                    sum(slow_distance(x, queries[i, w], metric) < d_c - 1e-6 for x in gallery)
                    / len(gallery)
                )
            assert float(got[i]) == pytest.approx(sum(ranks) / 3, abs=1.5 / len(gallery)), name
    loss = attack.objective(adv, batch, cands, targets)
    expected = 0.0
    for i in range(len(batch.index)):
        for w in range(3):
            d_c = slow_distance(adv[i], queries[i, w], metric)
            for x in gallery:
                gap = d_c - slow_distance(x, queries[i, w], metric)
                expected += max(gap if pm == "+" else -gap, 0.0)
    assert float(loss) == pytest.approx(expected / (len(batch.index) * 3 * len(gallery)), rel=1e-4)


def test_ca_benign_prank_of_a_candidate_ignores_its_own_clean_copy():
    cands, _ = make_state()
    attack = attacks.build("CA:pm=+:W=1")
    batch, targets, _ = attacked(cands, attack)
    prank = attack.measure(batch.clean, batch, cands, targets)["CA+:prank"]
    for i in range(len(batch.index)):
        query = targets["queries"][i, 0]
        d_c = slow_distance(batch.clean[i], query)
        strictly = sum(slow_distance(x, query) < d_c - 1e-6 for x in cands.gallery)
        assert round(float(prank[i]) * len(cands.gallery)) == strictly


def slow_rank(row_distances, target):
    """0-based position of ``target`` in the argsort of a distance row."""
    order = sorted(range(len(row_distances)), key=lambda j: (row_distances[j], j))
    return order.index(target)


@pytest.mark.parametrize("masks", [False, True])
@pytest.mark.parametrize("kind", ["QA", "SPQA"])
@pytest.mark.parametrize("pm", ["+", "-"])
def test_qa_and_spqa_targets_and_prank_match_reference(masks, kind, pm):
    cands, _ = make_state(n=60, masks=masks)
    attack = attacks.build(f"{kind}:pm={pm}:M=2")
    batch, targets, adv = attacked(cands, attack)
    gallery = cands.gallery
    for i, item in enumerate(batch.index.tolist()):
        own = own_position(cands, item)
        clean = [slow_distance(batch.clean[i], x) for x in gallery]
        others = sorted((d, j) for j, d in enumerate(clean) if j != own)
        chosen = targets["chosen"][i].tolist()
        assert own not in chosen
        if pm == "-":  # the pool: the nearest max(1%, M + 5 for SPQA) non-self candidates
            pool = {j for _, j in others[: 2 + (5 if kind == "SPQA" else 0)]}
            assert set(chosen) <= pool
        if kind == "SPQA":
            anchors = set(targets["anchors"][i].tolist())
            if pm == "+":
                assert anchors == {j for _, j in others[:5]}
            else:
                assert anchors == {j for _, j in others[:7]} - set(chosen)
        for emb in (batch.clean, adv):
            row = [slow_distance(emb[i], x) for x in gallery]
            summary = attack.measure(emb, batch, cands, targets)
            expected = sum(slow_rank(row, j) for j in chosen) / (2 * len(gallery))
            assert float(summary[f"{kind}{pm}:prank"][i]) == pytest.approx(expected)
            if kind == "SPQA":
                gt = sum(slow_rank(row, j) for j in targets["anchors"][i].tolist())
                assert float(summary[f"SPQA{pm}:GTprank"][i]) == pytest.approx(gt / (5 * len(row)))


def test_qa_objective_matches_reference():
    cands, _ = make_state()
    for pm in "+-":
        attack = attacks.build(f"QA:pm={pm}:M=2")
        batch, targets, adv = attacked(cands, attack)
        expected = 0.0
        for i in range(len(batch.index)):
            row = [slow_distance(adv[i], x) for x in cands.gallery]
            for j in targets["chosen"][i].tolist():
                expected += sum(max((row[j] - d) if pm == "+" else (d - row[j]), 0) for d in row)
        count = len(batch.index) * 2 * len(cands.gallery)
        loss = attack.objective(adv, batch, cands, targets)
        assert float(loss) == pytest.approx(expected / count, rel=1e-4)


def slow_top(row, own, k):
    return [j for _, j in sorted((d, j) for j, d in enumerate(row) if j != own)[:k]]


@pytest.mark.parametrize("masks", [False, True])
def test_es_ltm_gtm_gtt_tma_metrics_match_reference(masks):
    cands, _ = make_state(n=50, masks=masks)
    gallery, glabels = cands.gallery, cands.gallery_labels
    for kind in ("ES", "LTM", "GTM", "GTT", "TMA"):
        attack = attacks.build(kind)
        batch, targets, adv = attacked(cands, attack)
        for emb in (batch.clean, adv):
            summary = attack.measure(emb, batch, cands, targets)
            for i, item in enumerate(batch.index.tolist()):
                own, label = own_position(cands, item), int(batch.labels[i])
                row = [slow_distance(emb[i], x) for x in gallery]
                top = slow_top(row, own, 100)
                hit = [float(any(int(glabels[j]) == label for j in top[:k])) for k in (1, 10, 100)]
                if kind == "ES":
                    shift = slow_distance(emb[i], batch.clean[i])
                    assert float(summary["embshift"][i]) == pytest.approx(shift, abs=1e-5)
                    for k, value in zip((1, 10, 100), hit, strict=True):
                        assert float(summary[f"r@{k}"][i]) == 100.0 * value
                elif kind in ("LTM", "GTM"):
                    assert float(summary["r@1"][i]) == hit[0]
                elif kind == "GTT":
                    clean_row = [slow_distance(batch.clean[i], x) for x in gallery]
                    top1 = slow_top(clean_row, own, 1)[0]
                    assert float(summary["ID-Retain@1"][i]) == float(top[0] == top1)
                    assert float(summary["retain@4"][i]) == float(top1 in top[:4])
                else:
                    cosine = float((emb[i] * targets["target"][i]).sum())
                    assert float(summary["Cosine-SIM"][i]) == pytest.approx(cosine, abs=1e-5)


def test_gtm_target_is_the_nearest_wrong_class_candidate_and_compat_reproduces_the_quirk():
    cands, _ = make_state(n=50)
    batch, _, _ = attacked(cands, attacks.build("GTM"))
    correct, quirk = gtm_target(batch, cands, False), gtm_target(batch, cands, True)
    for i, item in enumerate(batch.index.tolist()):
        row = [slow_distance(batch.clean[i], x) for x in cands.gallery]
        order = slow_top(row, item, len(row))
        label = int(batch.labels[i])
        assert int(correct[i]) == next(j for j in order if int(cands.labels[j]) != label)
        top1_label = int(cands.labels[order[0]])
        unmatching = [j for j in range(len(row)) if int(cands.labels[j]) != top1_label]
        nearest = min((j for j in unmatching if j != item), key=lambda j: (row[j], j))
        assert int(quirk[i]) == unmatching.index(nearest)  # a subset position used globally


def test_es_offsets_the_clean_embedding_randomly_and_compat_by_one_constant():
    cands, _ = make_state()
    batch, targets, _ = attacked(cands, attacks.build("ES"))
    steps = (targets["origin"] - batch.clean) / 1e-7
    assert torch.allclose(steps, steps.round(), atol=0.3)  # float32: 1e-7 is a few ulps
    assert set(steps.round().unique().tolist()) == {-1.0, 0.0, 1.0}
    batch, targets, _ = attacked(cands, attacks.build("ES", compat=True))
    assert torch.equal(targets["origin"], batch.clean + 1e-7)  # robrank's AdvRank.attack


def test_es_compat_objective_is_robranks_pairwise_distance_on_hand_made_values():
    clean = torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    batch = SimpleNamespace(clean=clean)
    cands = SimpleNamespace(metric="N")
    origin = clean + 1e-7  # robrank's AdvRank.attack: f(x) + 1e-7 in every coordinate
    attack = attacks.build("ES", compat=True)
    embeds = clean.clone().requires_grad_(True)  # the first PGD step: x̃ = x
    value = attack.objective(embeds, batch, cands, {"origin": origin})
    # robrank: -Σ_i F.pairwise_distance(f(x̃), f(x) + 1e-7) = -Σ_i ‖f(x̃) − f(x) − 1e-7 + 1e-6‖
    expected = -2 * math.sqrt(3 * (1e-6 - 1e-7) ** 2)
    assert value.item() == pytest.approx(expected, rel=1e-3)
    (gradient,) = torch.autograd.grad(value, embeds)
    # the distance grows along +1 in every coordinate, so the gradient of −d points along −1
    assert (gradient < 0).all()
    correct = attacks.build("ES").objective(embeds, batch, cands, {"origin": origin})
    (ours,) = torch.autograd.grad(correct, embeds)
    assert (ours > 0).all()  # without the eps the first step goes the other way


@pytest.mark.parametrize("compat", [False, True])
def test_ltm_objective_matches_reference_with_and_without_the_self_mask(compat):
    cands, _ = make_state(n=30)
    attack = attacks.build("LTM", compat=compat)
    batch, targets, adv = attacked(cands, attack)
    expected = 0.0
    for i, item in enumerate(batch.index.tolist()):
        label = int(batch.labels[i])
        row = [slow_distance(adv[i], x) for x in cands.gallery]
        same = [d for j, d in enumerate(row) if int(cands.labels[j]) == label and
                (compat or j != item)]  # fmt: skip
        other = [d for j, d in enumerate(row) if int(cands.labels[j]) != label]
        if same and other:
            expected += max(max(other) - min(same), 0.0)
    assert float(attack.objective(adv, batch, cands, targets)) == pytest.approx(expected, rel=1e-4)


def test_foa_metrics_match_reference():
    cands, _ = make_state(n=50)
    for m, key in ((2, "FOA2:Accuracy"), (4, "FOA:tau")):
        attack = attacks.build(f"FOA:M={m}")
        batch, targets, adv = attacked(cands, attack)
        benign = attack.measure(batch.clean, batch, cands, targets)[key]
        if m == 2:
            assert float(benign.sum()) == 0.0  # the target reverses the clean order
        summary = attack.measure(adv, batch, cands, targets)[key]
        for i in range(len(batch.index)):
            d = [slow_distance(adv[i], cands.gallery[j]) for j in targets["chosen"][i].tolist()]
            pairs = [(a, b) for a in range(m) for b in range(a + 1, m)]
            tau = sum((d[a] < d[b]) - (d[a] > d[b]) for a, b in pairs) / len(pairs)
            assert float(summary[i]) == pytest.approx(float(d[0] < d[1]) if m == 2 else tau)


def test_target_selection_is_seeded():
    cands, _ = make_state(n=400)  # top-1% pools of 4: CA−/QA− draws can differ between seeds
    strings = ("CA:pm=+:W=2", "CA:pm=-:W=1", "QA:pm=+:M=1", "QA:pm=-:M=1", "SPQA:pm=+:M=1",
               "SPQA:pm=-:M=1", "TMA", "ES", "FOA:M=3")  # fmt: skip
    random_types = {"CA", "QA", "SPQA", "TMA", "ES", "FOA"}  # the others select deterministically
    assert {s.split(":")[0] for s in strings} == random_types
    assert random_types | {"LTM", "GTM", "GTT"} == set(attacks.ATTACKS.keys())
    for string in strings:
        attack = attacks.build(string)
        picks = [attacked(cands, attack, seed=seed)[1] for seed in (5, 5, 6)]
        drawn = {k: v for k, v in picks[0].items() if torch.is_tensor(v)}
        for key, value in drawn.items():
            assert torch.equal(value, picks[1][key]), (string, key)
        assert any(not torch.equal(v, picks[2][k]) for k, v in drawn.items()), string


def test_spqa_has_a_xi_rate_for_every_registered_dataset():
    from attacks.spqa import XI_RATE

    assert set(datasets.DATASETS.keys()) <= set(XI_RATE)


def test_spqa_needs_a_known_dataset():
    cands, _ = make_state()
    cands.dataset_name = "imagenet"
    attack = attacks.build("SPQA:pm=+:M=1")
    with pytest.raises(ConfigError, match="SPQA has no ξ rate for dataset 'imagenet'"):
        attacked(cands, attack)


def test_spqa_xi_rule_and_rate():
    from attacks.spqa import XI_RATE, xi_rate, xi_weight

    # robrank's rates on the reference's full test splits, proportional to the candidate count
    assert xi_rate("mnist", 10_000) == 2e4 and xi_rate("fashion", 10_000) == 4e4
    assert xi_rate("cub200", 5_924) == 4e4 and xi_rate("cars196", 8_131) == 7e4
    assert xi_rate("online_products", 60_502) == 7e4
    assert xi_rate("digits", 596) == pytest.approx(2e4 * 596 / 10_000)
    assert set(XI_RATE) >= {"mnist", "fashion", "cub200", "cars196", "online_products"}
    assert xi_weight(1e-4, 2e4) == pytest.approx(math.exp(2.0))
    assert xi_weight(0.0, 7e4) == 1.0
    assert xi_weight(1.0, 2e4) == 1e9  # capped
    assert xi_weight(float("nan"), 2e4) == 1e7


@pytest.mark.parametrize("pm", ["+", "-"])
def test_spqa_objective_matches_reference(pm):
    from attacks.spqa import xi_rate

    cands, _ = make_state(n=60)
    attack = attacks.build(f"SPQA:pm={pm}:M=2")
    batch, targets, adv = attacked(cands, attack)
    gallery = cands.gallery

    def hinge_mean(pick, sign):
        total, count = 0.0, 0
        for i in range(len(batch.index)):
            row = [slow_distance(adv[i], x) for x in gallery]
            for j in targets[pick][i].tolist():
                for d in row:
                    gap = row[j] - d
                    total += max(gap if sign == "+" else -gap, 0.0)
                    count += 1
        return total / count

    attack_loss, semantic = hinge_mean("chosen", pm), hinge_mean("anchors", "+")
    assert targets["rate"] == pytest.approx(xi_rate("digits", len(gallery)))
    xi = min(math.exp(targets["rate"] * semantic), 1e9)
    loss = float(attack.objective(adv, batch, cands, targets))
    assert loss == pytest.approx(attack_loss + xi * semantic, rel=1e-4)
