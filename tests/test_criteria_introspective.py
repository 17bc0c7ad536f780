"""IDML's introspective similarity (ISM): the formula against hand-made values and naive loops,
every loss with an ISM form (finite, gradients to the embeddings and the uncertainty), the
reference's normalised uncertainty, the documented limits, and the start-up check."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

import criteria
import main
import parameters
from batch_mining.base import BatchMiner
from criteria import CRITERIA, introspective
from criteria.base import Criterion
from criteria.introspective import (
    Introspection,
    introspection_factor,
    introspective_similarity,
    introspective_squared_distance,
)
from tests.test_defenses import digits_batch, make_step
from utilities.errors import ConfigError

N_CLASSES = 4
EMBED_DIM = 6
C, LAMBDA = 4.0, 5.0
ISM_LOSSES = introspective.introspective_losses()
# test_criteria.py collects every test_criteria_* module's naive references of the plain losses;
# this module's naive loops check the ISM forms of losses referenced there and in the proxy tests.
NAIVE: dict[str, object] = {}


pytestmark = pytest.mark.usefixtures("one_thread")


def make_opt(*flags: str, embed_dim: int = EMBED_DIM, **overrides: object) -> argparse.Namespace:
    opt = parameters.build_parser().parse_args(["--embed_dim", str(embed_dim), *flags])
    opt.n_classes = N_CLASSES
    for name, value in overrides.items():
        setattr(opt, name, value)
    return opt


def build(key: str, *flags: str, embed_dim: int = EMBED_DIM, **overrides: object) -> Criterion:
    miners = CRITERIA.get(key).allowed_miners
    miner = "distance" if "distance" in miners else (miners[0] if miners else "random")
    overrides.setdefault("batch_mining", miner)
    return criteria.build(make_opt(*flags, embed_dim=embed_dim, loss=key, **overrides))


def make_batch(
    per_class: int = 3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit embeddings B×D, labels B, an uncertainty B×D (not normalised), all leaf tensors."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(N_CLASSES).repeat_interleave(per_class)
    embeds = torch.nn.functional.normalize(torch.randn(len(labels), EMBED_DIM, generator=generator))
    uncertainty = 0.5 * torch.randn(len(labels), EMBED_DIM, generator=generator)
    return embeds.requires_grad_(True), labels, uncertainty.requires_grad_(True)


class FixedMiner(BatchMiner):
    """Returns the triplets it was given, so loss and reference see the same ones."""

    def __init__(self, mined: torch.Tensor) -> None:
        self.mined = mined

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.mined


# ---- naive references (plain Python floats) ----


def sq(u: list[float], v: list[float]) -> float:
    return sum((a - b) ** 2 for a, b in zip(u, v, strict=True))


def norm(u: list[float]) -> float:
    return math.sqrt(sum(a * a for a in u))


def unit(u: list[float]) -> list[float]:
    return [a / norm(u) for a in u]


def naive_factor(d_s: float, d_u: float, c: float = C, lam: float = LAMBDA) -> float:
    return math.exp(-(d_u + c) / (lam * d_s))


def naive_proxy_similarity(x: list[float], p: list[float], u: list[float]) -> float:
    """The spec's proxy form: s = cos(x̂, p/‖p‖), d_s = ‖x̂ − p‖² (raw p), d_u = ‖u‖²."""
    xh = unit(x)
    s = sum(a * b for a, b in zip(xh, unit(p), strict=True))
    return 1 - (1 - s) * naive_factor(sq(xh, p), sum(a * a for a in u))


def naive_pair_squared(x: list[float], y: list[float], ux: list[float], uy: list[float]) -> float:
    d2 = sq(x, y)
    return d2 * naive_factor(d2, sq(ux, uy))


# ---- the formula ----


def test_proxy_form_on_two_samples_and_two_proxies_by_hand():
    # x1 = (0.6, 0.8), p1 = (2, 0): x̂ = x, s = 0.6, d_s = (0.6−2)² + 0.8² = 2.6, d_u = 0.25
    # s_I = 1 − 0.4·exp(−4.25 / 13) (a value worked out by hand, not by the formula code).
    embeds = torch.tensor([[0.6, 0.8], [0.0, 3.0]])
    proxies = torch.tensor([[2.0, 0.0], [0.0, 0.5]])
    uncertainty = torch.tensor([[0.5, 0.0], [1.0, 1.0]])
    got = Introspection().proxy_similarities(embeds, proxies, uncertainty)
    assert got[0, 0].item() == pytest.approx(1 - 0.4 * math.exp(-4.25 / 13), abs=1e-6)
    # x2 = (0, 3): x̂ = (0, 1), p2 = (0, 0.5): s = 1, so s_I = 1 whatever the factor.
    assert got[1, 1].item() == pytest.approx(1.0, abs=1e-6)
    for i in range(2):
        for c in range(2):
            expected = naive_proxy_similarity(
                embeds[i].tolist(), proxies[c].tolist(), uncertainty[i].tolist()
            )
            assert got[i, c].item() == pytest.approx(expected, abs=1e-6)


def test_proxy_anchor_uses_the_introspective_similarity_in_both_exponents():
    crit = build("proxy_anchor", embed_dim=2)
    proxies = torch.tensor([[2.0, 0.0], [0.0, 0.5], [-1.0, 0.3], [0.4, -0.9]])
    crit.proxies.data.copy_(proxies)
    embeds = torch.tensor([[0.6, 0.8], [0.8, -0.6]])
    labels = torch.tensor([0, 1])
    uncertainty = torch.tensor([[0.5, 0.0], [1.0, 1.0]])
    got = crit(embeds, labels, uncertainty=uncertainty).item()
    alpha, delta = crit.alpha, crit.delta
    s_i = [[naive_proxy_similarity(e, p, u) for p in proxies.tolist()]
           for e, u in zip(embeds.tolist(), uncertainty.tolist(), strict=True)]  # fmt: skip
    pos = [math.log1p(math.exp(-alpha * (s_i[i][y] - delta))) for i, y in enumerate([0, 1])]
    neg = []
    for c in range(N_CLASSES):
        terms = [math.exp(alpha * (s_i[i][c] + delta)) for i, y in enumerate([0, 1]) if y != c]
        neg.append(math.log1p(sum(terms)))
    expected = sum(pos) / 2 + sum(neg) / N_CLASSES
    assert got == pytest.approx(expected, rel=1e-5)


def test_proxynca_introspective_distance_is_18_times_one_minus_s_i():
    crit = build("proxynca", embed_dim=2)
    proxies = torch.tensor([[2.0, 0.0], [0.0, 0.5], [-1.0, 0.3], [0.4, -0.9]])
    crit.proxies.data.copy_(proxies)
    embeds = torch.tensor([[0.6, 0.8], [0.8, -0.6], [-2.0, 1.0]])
    labels = torch.tensor([0, 1, 2])
    uncertainty = torch.tensor([[0.5, 0.0], [1.0, 1.0], [0.1, -0.3]])
    got = crit(embeds, labels, uncertainty=uncertainty).item()
    losses = []
    for e, u, y in zip(embeds.tolist(), uncertainty.tolist(), labels.tolist(), strict=True):
        d = [18 * (1 - naive_proxy_similarity(e, p, u)) for p in proxies.tolist()]
        others = [-d[c] for c in range(N_CLASSES) if c != y]
        top = max(others)
        losses.append(d[y] + top + math.log(sum(math.exp(v - top) for v in others)))
    assert got == pytest.approx(sum(losses) / len(losses), rel=1e-5)


TRIPLETS = torch.tensor([[0, 1, 3], [1, 2, 6], [4, 5, 0], [7, 8, 11], [9, 10, 2]])


@pytest.mark.parametrize("distance", ["squared", "euclidean", "cosine"])
def test_triplet_introspective_distances_match_a_naive_loop(distance):
    embeds, labels, uncertainty = make_batch()
    x = (embeds * 1.5).detach()  # not unit: squared/euclidean use the raw embeddings
    crit = build("triplet", loss_triplet_distance=distance)
    crit.miner = FixedMiner(TRIPLETS)
    got = crit(x, labels, uncertainty=uncertainty).item()
    rows, us = x.tolist(), uncertainty.tolist()

    def d(i: int, j: int) -> float:
        if distance == "cosine":
            return naive_pair_squared(unit(rows[i]), unit(rows[j]), us[i], us[j]) / 2
        squared = naive_pair_squared(rows[i], rows[j], us[i], us[j])
        return squared if distance == "squared" else math.sqrt(squared + 1e-8)

    terms = [max(0.0, d(a, p) - d(a, n) + crit.margin) for a, p, n in TRIPLETS.tolist()]
    assert got == pytest.approx(sum(terms) / len(terms), rel=1e-5, abs=1e-7)


def test_contrastive_and_margin_introspective_distances_match_a_naive_loop():
    embeds, labels, uncertainty = make_batch()
    rows, us = embeds.tolist(), uncertainty.tolist()

    def d(i: int, j: int) -> float:
        return math.sqrt(naive_pair_squared(rows[i], rows[j], us[i], us[j]) + 1e-8)

    crit = build("contrastive", loss_contrastive_neg_margin=0.8)
    crit.miner = FixedMiner(TRIPLETS)
    pull = [max(0.0, d(a, p) - crit.pos_margin) for a, p, _ in TRIPLETS.tolist()]
    push = [max(0.0, crit.neg_margin - d(a, n)) for a, _, n in TRIPLETS.tolist()]
    expected = sum(pull) / len(pull) + sum(push) / len(push)
    assert crit(embeds, labels, uncertainty=uncertainty).item() == pytest.approx(expected, rel=1e-5)

    crit = build("margin", loss_margin_beta=0.9)
    crit.miner = FixedMiner(TRIPLETS)
    total, active = 0.0, 0
    for a, p, n in TRIPLETS.tolist():
        beta = crit.beta[labels[a]].item()
        terms = [d(a, p) - beta + crit.margin, beta - d(a, n) + crit.margin]
        total += sum(t for t in terms if t > 0)
        active += sum(t > 0 for t in terms)
    expected = total / max(active, 1)
    assert crit(embeds, labels, uncertainty=uncertainty).item() == pytest.approx(expected, rel=1e-5)


def test_multisimilarity_uses_the_introspective_similarity_matrix():
    embeds, labels, uncertainty = make_batch()
    crit = build("multisimilarity")
    got = crit(embeds, labels, uncertainty=uncertainty).item()
    rows, us, ys = embeds.tolist(), uncertainty.tolist(), labels.tolist()
    n = len(ys)
    sim = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if i != j:
                s = sum(a * b for a, b in zip(rows[i], rows[j], strict=True))
                sim[i][j] = 1 - (1 - s) * naive_factor(sq(rows[i], rows[j]), sq(us[i], us[j]))
    alpha, beta, eps, lam = crit.pos_weight, crit.neg_weight, crit.margin, crit.thresh
    losses = []
    for i in range(n):
        pos = [sim[i][j] for j in range(n) if ys[j] == ys[i] and j != i]
        neg = [sim[i][j] for j in range(n) if ys[j] != ys[i]]
        kept_neg = [s for s in neg if s + eps > min(pos)]
        kept_pos = [s for s in pos if s - eps < max(neg)]
        if kept_neg and kept_pos:
            pos_term = math.log(1 + sum(math.exp(-alpha * (s - lam)) for s in kept_pos)) / alpha
            neg_term = math.log(1 + sum(math.exp(beta * (s - lam)) for s in kept_neg)) / beta
            losses.append(pos_term + neg_term)
    expected = sum(losses) / len(losses) if losses else 0.0
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-6)


# ---- every loss with an ISM form ----


@pytest.mark.parametrize("key", ISM_LOSSES)
def test_finite_and_gradients_reach_embeddings_and_uncertainty(key):
    embeds, labels, uncertainty = make_batch()
    torch.manual_seed(0)
    loss = build(key)(embeds, labels, uncertainty=uncertainty)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for grad in (embeds.grad, uncertainty.grad):
        assert grad is not None and torch.isfinite(grad).all()
        assert grad.abs().sum() > 0


@pytest.mark.parametrize("key", ISM_LOSSES)
def test_differs_from_the_plain_loss_and_tends_to_it_for_large_lambda(key):
    embeds, labels, uncertainty = make_batch()
    torch.manual_seed(0)
    crit = build(key)
    plain = crit(embeds, labels)
    torch.manual_seed(0)
    assert crit(embeds, labels, uncertainty=uncertainty).item() != pytest.approx(plain.item())
    torch.manual_seed(0)
    crit = build(key, loss_idml_lambda=1e9)
    torch.manual_seed(0)
    plain = crit(embeds, labels)
    torch.manual_seed(0)
    limit = crit(embeds, labels, uncertainty=uncertainty)
    assert limit.item() == pytest.approx(plain.item(), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("key", ["proxy_anchor", "proxynca"])
def test_reference_normalised_uncertainty_gives_the_head_no_gradient(key):
    embeds, labels, uncertainty = make_batch()
    crit = build(key, "--loss_idml_normalize_uncertainty")
    crit(embeds, labels, uncertainty=uncertainty).backward()
    assert uncertainty.grad is not None and uncertainty.grad.abs().max() < 1e-6
    assert embeds.grad.abs().sum() > 0
    # and the loss is that of d_u ≡ 1: any uncertainty of the same direction gives it
    scaled = crit(embeds, labels, uncertainty=7 * uncertainty.detach())
    assert scaled.item() == pytest.approx(crit(embeds, labels, uncertainty=uncertainty).item())


def test_reference_normalised_uncertainty_still_trains_pair_losses():
    embeds, labels, uncertainty = make_batch()
    crit = build("multisimilarity", "--loss_idml_normalize_uncertainty")
    crit(embeds, labels, uncertainty=uncertainty).backward()
    assert uncertainty.grad.abs().max() > 1e-4


# ---- limits and numerics ----


def test_documented_limits():
    generator = torch.Generator().manual_seed(1)
    s = torch.rand(200, generator=generator) * 2 - 1
    d_s = torch.rand(200, generator=generator) * 4
    d_u = torch.rand(200, generator=generator) * 3
    s_i = introspective_similarity(s, d_s, d_u, C, LAMBDA)
    assert (s_i >= s - 1e-7).all() and (s_i <= 1).all()  # exp(·) ∈ (0, 1]
    # more uncertainty distance, or a smaller semantic distance: closer to 1
    assert (introspective_similarity(s, d_s, d_u + 1, C, LAMBDA) >= s_i - 1e-7).all()
    assert (introspective_similarity(s, d_s / 2, d_u, C, LAMBDA) >= s_i - 1e-7).all()
    # λ·d_s large against d_u + c: s_I → s; d_s → 0 (c > 0): s_I → 1; c = d_u = 0: s_I = s
    assert torch.allclose(introspective_similarity(s, d_s + 1e9, d_u, C, LAMBDA), s, atol=1e-6)
    tiny = torch.full_like(d_s, 1e-6)
    assert torch.allclose(introspective_similarity(s, tiny, d_u, C, LAMBDA), torch.ones_like(s))
    zero = torch.zeros_like(d_u)
    assert torch.allclose(introspective_similarity(s, d_s + 0.1, zero, 0.0, LAMBDA), s)
    # a large c: s_I → 1
    assert torch.allclose(introspective_similarity(s, d_s, d_u, 1e9, LAMBDA), torch.ones_like(s))
    # the squared-distance form is 2(1 − s_I) on unit vectors (1 − s = d²/2)
    d2 = 2 * (1 - s)
    assert torch.allclose(
        introspective_squared_distance(d2, d_u, C, LAMBDA),
        2 * (1 - introspective_similarity(s, d2, d_u, C, LAMBDA)),
        atol=1e-6,
    )


@pytest.mark.parametrize("c", [C, 0.0])
def test_zero_semantic_distance_is_finite_with_finite_gradients(c):
    d_s = torch.tensor([0.0, 0.0, 1e-30, 0.5], requires_grad=True)
    d_u = torch.tensor([0.0, 2.0, 0.0, 0.0], requires_grad=True)
    factor = introspection_factor(d_s, d_u, c, LAMBDA)
    assert torch.isfinite(factor).all()
    if c > 0:
        assert factor[:3].max() < 1e-30  # the limit d_s → 0
    else:
        assert factor[0].item() == 1.0 and factor[1].item() < 1e-30
    factor.sum().backward()
    assert torch.isfinite(d_s.grad).all() and torch.isfinite(d_u.grad).all()


@pytest.mark.parametrize("key", ISM_LOSSES)
@pytest.mark.parametrize("c", [C, 0.0])
def test_duplicate_samples_and_the_diagonal_give_no_nan_gradient(key, c):
    embeds, labels, uncertainty = make_batch()
    # every sample twice (x_i = x_j, u_i = u_j for i ≠ j), plus the proxies at the samples
    embeds = torch.cat([embeds.detach(), embeds.detach()]).requires_grad_(True)
    uncertainty = torch.cat([uncertainty.detach(), uncertainty.detach()]).requires_grad_(True)
    labels = torch.cat([labels, labels])
    torch.manual_seed(0)
    crit = build(key, loss_idml_c=c)
    if hasattr(crit, "proxies"):
        crit.proxies.data[:N_CLASSES] = embeds.detach()[::3][:N_CLASSES]
    loss = crit(embeds, labels, uncertainty=uncertainty)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(embeds.grad).all() and torch.isfinite(uncertainty.grad).all()
    if hasattr(crit, "proxies"):
        assert torch.isfinite(crit.proxies.grad).all()


# ---- flags and the start-up check ----


def test_flag_defaults():
    opt = make_opt()
    assert opt.loss_idml_c == 4.0 and opt.loss_idml_lambda == 5.0
    assert opt.loss_idml_normalize_uncertainty is False
    assert Introspection.from_options(opt) == Introspection(4.0, 5.0, False)


@pytest.mark.parametrize(("flag", "value"), [("--loss_idml_c", "-1"), ("--loss_idml_lambda", "0")])
def test_flag_ranges(flag, value):
    with pytest.raises(SystemExit) as error:
        parameters.build_parser().parse_args([flag, value])
    assert error.value.code == 2


@pytest.fixture
def idml_flag(monkeypatch):
    """``--idml`` in the parser (declared by the architectures; added here if it is not yet)."""
    build_parser = parameters.build_parser

    def with_idml(*args, **kwargs):
        parser = build_parser(*args, **kwargs)
        if "--idml" not in parser._option_string_actions:
            parser.add_argument("--idml", action="store_true")
        return parser

    monkeypatch.setattr(parameters, "build_parser", with_idml)


def test_idml_with_a_loss_without_ism_fails_at_start_up(idml_flag, capsys):
    assert not getattr(CRITERIA.get("softmax"), "introspective", False)
    with pytest.raises(ConfigError) as error:
        parameters.parse_args(["--idml", "--loss", "softmax"])
    message = str(error.value)
    assert "--loss" in message and "softmax" in message
    assert all(key in message for key in ISM_LOSSES)
    capsys.readouterr()
    assert main.main(["--num_workers", "0", "--idml", "--loss", "softmax"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "softmax" in err


@pytest.mark.parametrize("key", ISM_LOSSES)
def test_idml_with_an_ism_loss_passes_the_check(idml_flag, key):
    opt = make_opt(loss=key, idml=True)
    criteria.check_introspection(opt)


def test_without_idml_every_loss_passes_the_check():
    for key in CRITERIA:
        criteria.check_introspection(make_opt(loss=key))


STEPS = [
    ["--loss", "proxy_anchor", "--input_mixup"],
    ["--defense", "est", "--loss", "proxynca"],
    ["--defense", "act", "--loss", "triplet", "--batch_mining", "anchor_random"],
    ["--defense", "hm", "--loss", "margin", "--batch_mining", "anchor_random"],
    ["--defense", "hm", "--loss", "triplet", "--batch_mining", "anchor_random",
     "--defense_hm_fix_anchor"],
]  # fmt: skip


@pytest.mark.parametrize("flags", STEPS, ids=lambda flags: "-".join(flags[:4]))
def test_every_training_step_gives_the_loss_the_uncertainty_of_its_embeddings(flags):
    if "--idml" not in parameters.build_parser()._option_string_actions:
        pytest.skip("the architectures do not declare --idml yet")
    step = make_step(*flags, "--idml", "--defense_pgditer", "1")
    calls = []
    forward = step.criterion.forward

    def recording_forward(embeds, labels, **context):
        calls.append((len(embeds), len(context["uncertainty"])))
        return forward(embeds, labels, **context)

    step.criterion.forward = recording_forward
    images, labels = digits_batch()
    terms = step(images, labels)
    assert all(torch.isfinite(value) for value in terms.values())
    assert calls and all(rows == uncertainty_rows for rows, uncertainty_rows in calls)
