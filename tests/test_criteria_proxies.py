"""Proxy and classification losses: agreement with naive per-sample loops (float64), gradients to
embeddings and parameters, edge batches, parameter groups and the reference-bug flags."""

from __future__ import annotations

import math

import pytest
import torch

import criteria
import parameters
from criteria.base import Criterion
from utilities.errors import ConfigError

PROXY_LOSSES = ("arcface", "proxy_anchor", "proxynca", "softmax", "softtriplet")
N_CLASSES = 5
DIM = 6


def build(key: str, *flags: str, n_classes: int = N_CLASSES) -> Criterion:
    opt = parameters.build_parser().parse_args(["--loss", key, "--embed_dim", str(DIM), *flags])
    opt.n_classes = n_classes
    torch.manual_seed(0)
    return criteria.build(opt).double()


def make_batch(labels: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    embeds = torch.randn(len(labels), DIM, generator=generator, dtype=torch.float64)
    return embeds.requires_grad_(True), torch.tensor(labels)


def unit(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(a * a for a in v))
    return [a / norm for a in v]


def dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v, strict=True))


def rows(t: torch.Tensor) -> list[list[float]]:
    return t.detach().tolist()


def cross_entropy(logits: list[float], target: int) -> float:
    top = max(logits)
    return -(logits[target] - top - math.log(sum(math.exp(v - top) for v in logits)))


def naive_proxynca(crit: Criterion, x: torch.Tensor, y: torch.Tensor) -> float:
    proxies = [[3 * a for a in unit(p)] for p in rows(crit.proxies)]
    total = 0.0
    for xi, yi in zip(rows(x), y.tolist(), strict=True):
        xi = [3 * a for a in unit(xi)]
        d = [sum((a - b) ** 2 for a, b in zip(xi, p, strict=True)) for p in proxies]
        negatives = sum(math.exp(-d[c]) for c in range(len(d)) if c != yi)
        total += -math.log(math.exp(-d[yi]) / negatives)
    return total / len(y)


def naive_softmax(crit: Criterion, x: torch.Tensor, y: torch.Tensor) -> float:
    weights = [unit(w) for w in rows(crit.class_matrix)]
    losses = [
        cross_entropy([dot(unit(xi), w) / crit.temperature for w in weights], yi)
        for xi, yi in zip(rows(x), y.tolist(), strict=True)
    ]
    return sum(losses) / len(losses)


def naive_arcface(crit: Criterion, x: torch.Tensor, y: torch.Tensor) -> float:
    weights = [unit(w) for w in rows(crit.class_matrix)]
    losses = []
    for xi, yi in zip(rows(x), y.tolist(), strict=True):
        cos = [dot(unit(xi), w) for w in weights]
        if crit.reference_bug:
            cos = [min(max(c, 1e-10), 1 - 1e-10) for c in cos]
            shift = math.cos(math.acos(cos[yi]) + crit.margin) - cos[yi]
            logits = [c + shift for c in cos]
        else:
            logits = list(cos)
            logits[yi] = math.cos(math.acos(cos[yi]) + crit.margin)
        losses.append(cross_entropy([crit.scale * v for v in logits], yi))
    return sum(losses) / len(losses)


def naive_softtriplet(crit: Criterion, x: torch.Tensor, y: torch.Tensor) -> float:
    k = crit.n_centroids
    if crit.reference_math:  # each embedding dimension normalised across all centres
        columns = [unit(column) for column in rows(crit.centres.T)]
        centres = [list(row) for row in zip(*columns, strict=True)]
    else:
        centres = [unit(w) for w in rows(crit.centres)]
    n_classes = len(centres) // k
    losses = []
    for xi, yi in zip(rows(x), y.tolist(), strict=True):
        sims = [[dot(unit(xi), centres[c * k + j]) for j in range(k)] for c in range(n_classes)]
        if crit.reference_math:  # softmax over the classes, for each centre index j, of γ·S
            totals = [sum(math.exp(crit.gamma * row[j]) for row in sims) for j in range(k)]
            weights = [
                [math.exp(crit.gamma * row[j]) / totals[j] for j in range(k)] for row in sims
            ]
        else:  # softmax over the class's centres of S/γ
            weights = [
                [math.exp(s / crit.gamma) / sum(math.exp(t / crit.gamma) for t in row) for s in row]
                for row in sims
            ]
        logits = []
        for c in range(n_classes):
            score = sum(w * s for w, s in zip(weights[c], sims[c], strict=True))
            logits.append(crit.scale * (score - (crit.delta if c == yi else 0.0)))
        losses.append(cross_entropy(logits, yi))
    loss = sum(losses) / len(losses)
    if k > 1:
        spread = sum(
            math.sqrt(2 + 1e-5 - 2 * dot(centres[c * k + i], centres[c * k + j]))
            for c in range(n_classes)
            for i in range(k)
            for j in range(i + 1, k)
        )
        loss += crit.reg_weight * spread / (n_classes * k * (k - 1))
    return loss


def naive_proxy_anchor(crit: Criterion, x: torch.Tensor, y: torch.Tensor) -> float:
    proxies = [unit(p) for p in rows(crit.proxies)]
    xs = [unit(v) for v in rows(x)]
    labels = y.tolist()
    positive_terms, negative_terms = [], []
    for c, p in enumerate(proxies):
        pos = [
            math.exp(-crit.alpha * (dot(v, p) - crit.delta))
            for v, label in zip(xs, labels, strict=True)
            if label == c
        ]
        neg = [
            math.exp(crit.alpha * (dot(v, p) + crit.delta))
            for v, label in zip(xs, labels, strict=True)
            if label != c
        ]
        if pos:
            positive_terms.append(math.log(1 + sum(pos)))
        negative_terms.append(math.log(1 + sum(neg)))
    return sum(positive_terms) / len(positive_terms) + sum(negative_terms) / len(proxies)


NAIVE = {
    "proxynca": naive_proxynca,
    "softmax": naive_softmax,
    "arcface": naive_arcface,
    "softtriplet": naive_softtriplet,
    "proxy_anchor": naive_proxy_anchor,
}
VARIANTS = [
    ("proxynca", ()),
    ("softmax", ()),
    ("softmax", ("--loss_softmax_temperature", "0.5")),
    ("arcface", ()),
    ("arcface", ("--loss_arcface_reference_bug",)),
    ("softtriplet", ()),
    ("softtriplet", ("--loss_softtriplet_n_centroids", "3", "--loss_softtriplet_gamma", "0.5")),
    ("softtriplet", ("--loss_softtriplet_n_centroids", "1")),
    ("softtriplet", ("--loss_softtriplet_reference_math",)),
    ("softtriplet", ("--loss_softtriplet_reference_math", "--loss_softtriplet_n_centroids", "3")),
    ("proxy_anchor", ()),
    ("proxy_anchor", ("--loss_proxy_anchor_alpha", "4", "--loss_proxy_anchor_delta", "0.3")),
]
BATCHES = [[0, 0, 1, 1, 2, 2, 3, 4], [1, 3, 3, 3, 0], [2, 2, 2, 2], [4, 1]]


def test_every_proxy_loss_has_a_naive_reference() -> None:
    assert set(NAIVE) == set(PROXY_LOSSES) <= set(criteria.CRITERIA.keys())


@pytest.mark.parametrize(("key", "flags"), VARIANTS)
@pytest.mark.parametrize("labels", BATCHES)
def test_matches_naive_loop(key: str, flags: tuple[str, ...], labels: list[int]) -> None:
    crit = build(key, *flags)
    with torch.no_grad():  # move the parameters away from their init so every term matters
        for parameter in crit.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    embeds, y = make_batch(labels, seed=len(labels))
    loss = crit(embeds, y)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(NAIVE[key](crit, embeds, y), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("key", PROXY_LOSSES)
@pytest.mark.parametrize("labels", BATCHES)
def test_finite_with_gradients_to_embeddings_and_parameters(key: str, labels: list[int]) -> None:
    crit = build(key)
    embeds, y = make_batch(labels)
    loss = crit(embeds, y)
    loss.backward()
    assert torch.isfinite(loss)
    assert embeds.grad is not None and torch.isfinite(embeds.grad).all()
    assert embeds.grad.abs().sum() > 0
    for parameter in crit.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
        assert parameter.grad.abs().sum() > 0


@pytest.mark.parametrize("key", PROXY_LOSSES)
def test_float32_on_the_embeddings_device(key: str) -> None:
    crit = build(key).float()
    embeds = torch.randn(6, DIM, requires_grad=True)
    loss = crit(embeds, torch.tensor([0, 0, 1, 1, 4, 4]))
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(embeds.grad).all()


@pytest.mark.parametrize(
    ("key", "flags", "lr"),
    [
        ("proxynca", (), 1e-5 * 50),
        ("proxynca", ("--loss_proxynca_lrmulti", "3"), 3e-5),
        ("softmax", (), 1e-5),
        ("softmax", ("--loss_softmax_lr", "0.002"), 0.002),
        ("arcface", (), 5e-4),
        ("softtriplet", (), 1e-5),
        ("softtriplet", ("--loss_softtriplet_lrmulti", "10"), 1e-4),
        ("proxy_anchor", (), 1e-3),
        ("proxy_anchor", ("--loss_proxy_anchor_lrmulti", "1"), 1e-5),
    ],
)
def test_param_groups_reference_rates_and_weight_decay(
    key: str, flags: tuple[str, ...], lr: float
) -> None:
    crit = build(key, "--lr", "1e-5", "--decay", "3e-4", *flags)
    (group,) = crit.param_groups()
    assert group["lr"] == pytest.approx(lr)
    # Only the official Proxy-Anchor code decays its proxies (with the network's weight decay).
    assert group["weight_decay"] == (3e-4 if key == "proxy_anchor" else 0.0)
    assert {id(p) for p in group["params"]} == {id(p) for p in crit.parameters()}


def test_parameters_join_the_optimizer_through_build_optimizer() -> None:
    from architectures import build as build_model
    from utilities.optimization import build_optimizer

    opt = parameters.build_parser().parse_args(["--loss", "proxy_anchor", "--arch", "c2f2"])
    opt.n_classes = 3
    crit = criteria.build(opt)
    optimizer = build_optimizer(opt, build_model(opt), crit)
    groups = [g for g in optimizer.param_groups if any(p is crit.proxies for p in g["params"])]
    assert len(groups) == 1 and groups[0]["lr"] == pytest.approx(opt.lr * 100)
    assert groups[0]["weight_decay"] == opt.decay


def test_shapes_of_parameters_follow_n_classes_and_embed_dim() -> None:
    assert build("proxynca").proxies.shape == (N_CLASSES, DIM)
    assert build("proxy_anchor").proxies.shape == (N_CLASSES, DIM)
    assert build("softmax").class_matrix.shape == (N_CLASSES, DIM)
    assert build("arcface").class_matrix.shape == (N_CLASSES, DIM)
    centres = build("softtriplet", "--loss_softtriplet_n_centroids", "4").centres
    assert centres.shape == (N_CLASSES * 4, DIM)


@pytest.mark.parametrize("key", ["proxynca", "softmax", "arcface", "softtriplet"])
def test_one_training_class_is_config_error(key: str) -> None:
    with pytest.raises(ConfigError, match=f"--loss {key}"):
        build(key, n_classes=1)


def test_arcface_keeps_negative_cosines() -> None:
    crit = build("arcface")
    embeds = torch.nn.functional.normalize(crit.class_matrix.detach().clone(), dim=1)
    labels = torch.arange(N_CLASSES)
    against = -embeds.roll(1, 0)  # negative cosine with another class raises nothing in the bug
    fixed = crit(torch.cat([embeds, against]), torch.cat([labels, labels]))
    buggy = build("arcface", "--loss_arcface_reference_bug")
    assert fixed.item() != pytest.approx(
        buggy(torch.cat([embeds, against]), torch.cat([labels, labels])).item()
    )


def test_arcface_reference_bug_margin_is_a_no_op() -> None:
    buggy = build("arcface", "--loss_arcface_reference_bug")
    other = build("arcface", "--loss_arcface_reference_bug", "--loss_arcface_angular_margin", "0")
    embeds, y = make_batch([0, 1, 2, 3, 4, 0])
    assert buggy(embeds, y).item() == pytest.approx(other(embeds, y).item(), rel=1e-10)
    fixed = build("arcface")
    no_margin = build("arcface", "--loss_arcface_angular_margin", "0")
    assert fixed(embeds, y).item() > no_margin(embeds, y).item()


def test_softtriplet_assignment_is_over_a_class_centres() -> None:
    """With a huge 1/γ the class score is the best centre's similarity (hard max over K)."""
    crit = build(
        "softtriplet", "--loss_softtriplet_gamma", "1e-4", "--loss_softtriplet_reg_weight", "0"
    )
    embeds, y = make_batch([0, 1, 2])
    centres = torch.nn.functional.normalize(crit.centres, dim=1).view(N_CLASSES, 2, DIM)
    sims = torch.einsum("bd,ckd->bck", torch.nn.functional.normalize(embeds, dim=1), centres)
    scores = sims.max(2).values - crit.delta * torch.nn.functional.one_hot(y, N_CLASSES)
    expected = torch.nn.functional.cross_entropy(crit.scale * scores, y)
    assert crit(embeds, y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_proxy_anchor_positive_term_averages_over_proxies_with_positives() -> None:
    crit = build("proxy_anchor")
    embeds, y = make_batch([2, 2, 2])
    only = naive_proxy_anchor(crit, embeds, y)
    assert crit(embeds, y).item() == pytest.approx(only, rel=1e-6)
