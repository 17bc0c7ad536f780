"""Losses: finite values, gradients, agreement with naive per-triplet loops, edge cases."""

from __future__ import annotations

import argparse
import importlib
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import criteria
import parameters
from batch_mining import MINERS
from batch_mining.base import BatchMiner
from criteria import CRITERIA
from criteria.base import Criterion
from utilities.errors import ConfigError

N_CLASSES = 6


pytestmark = pytest.mark.usefixtures("one_thread")


EMBED_DIM = 8


def make_opt(**overrides: object) -> argparse.Namespace:
    """Every flag at its parser default, ``n_classes`` set, then ``overrides``."""
    opt = parameters.build_parser().parse_args(["--embed_dim", str(EMBED_DIM)])
    opt.n_classes = N_CLASSES
    for name, value in overrides.items():
        setattr(opt, name, value)
    return opt


def build(key: str, **overrides: object) -> Criterion:
    """The loss ``key`` with the ``distance`` miner (else its first allowed one) unless
    ``overrides`` name a ``batch_mining``."""
    miners = CRITERIA.get(key).allowed_miners
    miner = "distance" if "distance" in miners else (miners[0] if miners else "random")
    overrides.setdefault("batch_mining", miner)
    return criteria.build(make_opt(loss=key, **overrides))


def make_batch(
    per_class: int = 3, dim: int = EMBED_DIM, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(N_CLASSES).repeat_interleave(per_class)
    embeds = torch.nn.functional.normalize(
        torch.randn(len(labels), dim, generator=generator), dim=1
    )
    return embeds.requires_grad_(True), labels


class FixedMiner(BatchMiner):
    """Returns the triplets it was given, so loss and reference see the same ones."""

    def __init__(self, mined: torch.Tensor) -> None:
        self.mined = mined

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.mined


def dist(u: torch.Tensor, v: torch.Tensor) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(u.tolist(), v.tolist(), strict=False)) + 1e-8)


def sqdist(u: torch.Tensor, v: torch.Tensor) -> float:
    return sum((x - y) ** 2 for x, y in zip(u.tolist(), v.tolist(), strict=False))


def cosine_distance(u: torch.Tensor, v: torch.Tensor) -> float:
    dot = sum(x * y for x, y in zip(u.tolist(), v.tolist(), strict=True))
    return 1.0 - dot / math.sqrt(sqdist(u, 0 * u) * sqdist(v, 0 * v))


def naive_triplet(crit: Criterion, x: torch.Tensor, y: torch.Tensor, mined: list) -> float:
    d = {"squared": sqdist, "euclidean": dist, "cosine": cosine_distance}[crit.distance]
    terms = [max(0.0, d(x[a], x[p]) - d(x[a], x[n]) + crit.margin) for a, p, n in mined]
    return sum(terms) / len(terms)


def naive_contrastive(crit: Criterion, x: torch.Tensor, y: torch.Tensor, mined: list) -> float:
    pull = [max(0.0, dist(x[a], x[p]) - crit.pos_margin) for a, p, _ in mined]
    push = [max(0.0, crit.neg_margin - dist(x[a], x[n])) for a, _, n in mined]
    return sum(pull) / len(pull) + sum(push) / len(push)


def naive_margin(crit: Criterion, x: torch.Tensor, y: torch.Tensor, mined: list) -> float:
    total, active, betas = 0.0, 0, []
    for a, _, _ in mined:
        betas.append(crit.beta if isinstance(crit.beta, float) else crit.beta[y[a]].item())
    for (a, p, n), beta in zip(mined, betas, strict=False):
        terms = [dist(x[a], x[p]) - beta + crit.margin, beta - dist(x[a], x[n]) + crit.margin]
        total += sum(term for term in terms if term > 0)
        if crit.reference_pair_count:  # triplets with a non-zero term
            active += any(term > 0 for term in terms)
        else:  # non-zero terms
            active += sum(term > 0 for term in terms)
    return (total + crit.nu * sum(betas)) / max(active, 1)


def variance(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


def naive_snr(crit: Criterion, x: torch.Tensor, y: torch.Tensor, mined: list) -> float:
    terms, reg = [], []
    for a, p, n in mined:
        xa, xp, xn = x[a].tolist(), x[p].tolist(), x[n].tolist()
        snr_p = variance([u - v for u, v in zip(xa, xp, strict=True)]) / variance(xa)
        snr_n = variance([u - v for u, v in zip(xa, xn, strict=True)]) / variance(xa)
        terms.append(max(0.0, snr_p - snr_n + crit.margin))
        reg.append(abs(sum(xa)))
    active = sum(1 for t in terms if t > 0)
    return sum(terms) / max(active, 1) + crit.reg_lambda * sum(reg) / len(reg)


def cosine_matrix(x: torch.Tensor) -> list[list[float]]:
    rows = [[v / math.sqrt(sum(u * u for u in row)) for v in row] for row in x.tolist()]
    return [[sum(u * v for u, v in zip(r, s, strict=True)) for s in rows] for r in rows]


def naive_multisimilarity(crit: Criterion, x: torch.Tensor, y: torch.Tensor, _: None) -> float:
    sim, labels, losses = cosine_matrix(x), y.tolist(), []
    alpha, beta, eps, lam = crit.pos_weight, crit.neg_weight, crit.margin, crit.thresh
    for i in range(len(labels)):
        pos = [sim[i][j] for j in range(len(labels)) if labels[j] == labels[i] and j != i]
        neg = [sim[i][j] for j in range(len(labels)) if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        kept_neg = [s for s in neg if s + eps > min(pos)]
        kept_pos = [s for s in pos if s - eps < max(neg)]
        if not kept_neg or not kept_pos:
            continue
        pos_term = math.log(1 + sum(math.exp(-alpha * (s - lam)) for s in kept_pos)) / alpha
        neg_term = math.log(1 + sum(math.exp(beta * (s - lam)) for s in kept_neg)) / beta
        losses.append(pos_term + neg_term)
    return sum(losses) / len(losses) if losses else 0.0


def naive_histogram(crit: Criterion, x: torch.Tensor, y: torch.Tensor, _: None) -> float:
    sim, labels, nbins = cosine_matrix(x), y.tolist(), crit.nbins
    step = 2 / (nbins - 1)
    nodes = [-1 + r * step for r in range(nbins)]
    hist = {True: [0.0] * nbins, False: [0.0] * nbins}
    count = {True: 0, False: 0}
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            same = labels[i] == labels[j]
            count[same] += 1
            for r, node in enumerate(nodes):
                hist[same][r] += max(0.0, 1 - abs(sim[i][j] - node) / step)
    pos = [h / count[True] for h in hist[True]]
    neg = [h / count[False] for h in hist[False]]
    return sum(neg[r] * sum(pos[: r + 1]) for r in range(nbins))


NAIVE: dict[str, Callable[[Criterion, torch.Tensor, torch.Tensor, list | None], float]] = {
    "triplet": naive_triplet,
    "contrastive": naive_contrastive,
    "margin": naive_margin,
    "snr": naive_snr,
    "multisimilarity": naive_multisimilarity,
    "histogram": naive_histogram,
}


@pytest.mark.parametrize("key", CRITERIA.keys())
def test_finite_and_gradients_reach_embeddings(key: str) -> None:
    embeds, labels = make_batch()
    torch.manual_seed(0)
    loss = build(key)(embeds * 3, labels)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert embeds.grad is not None and torch.isfinite(embeds.grad).all()
    assert embeds.grad.abs().sum() > 0


# This module's naive references (other test_criteria_* modules check their own losses).
VARIANTS = [(key, {}) for key in NAIVE] + [
    ("margin", {"loss_margin_nu": 0.3}),
    ("margin", {"loss_margin_beta_constant": True}),
    ("margin", {"loss_margin_reference_pair_count": True}),
    ("snr", {"batch_mining": "semihard"}),  # λ regulariser active (0 with distance)
    ("snr", {"batch_mining": "rho_distance", "miner_rho_distance_cp": 0.5}),
    ("triplet", {"batch_mining": "rho_distance", "miner_rho_distance_cp": 0.5}),
    ("triplet", {"loss_triplet_distance": "euclidean", "batch_mining": "anchor_random"}),
    ("triplet", {"loss_triplet_distance": "cosine", "batch_mining": "hard"}),
    ("multisimilarity", {"loss_multisimilarity_margin": 0.5, "loss_multisimilarity_thresh": 0.2}),
    ("histogram", {"loss_histogram_nbins": 11}),
]


def test_every_loss_has_a_naive_reference() -> None:
    """Every registered loss is checked against a naive loop: the ``NAIVE`` dict of this module
    or of another ``tests/test_criteria_*.py`` module (e.g. the proxy losses')."""
    covered = set(NAIVE)
    for path in Path(__file__).parent.glob("test_criteria_*.py"):
        covered |= set(importlib.import_module(path.stem).NAIVE)
    missing = set(CRITERIA.keys()) - covered
    assert not missing, f"add a naive reference implementation of {sorted(missing)}"


@pytest.mark.parametrize(("key", "overrides"), VARIANTS)
def test_matches_naive_loop(key: str, overrides: dict) -> None:
    assert key in NAIVE, f"add a naive reference implementation of loss {key!r} to NAIVE"
    embeds, labels = make_batch(per_class=3, dim=6, seed=1)
    crit = build(key, **overrides)
    mined = None
    if crit.requires_batchminer:
        torch.manual_seed(0)
        mined = crit.miner(embeds, labels)
        crit.miner = FixedMiner(mined)
        mined = mined.tolist()
    scaled = (embeds * 1.3).double()
    expected = NAIVE[key](crit, scaled.detach(), labels, mined)
    assert expected > 0
    assert crit(scaled, labels).item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("key", CRITERIA.keys())
@pytest.mark.parametrize(
    "labels",
    [[2, 2, 2, 2], [0, 1, 2, 3], [0, 1], [4, 4]],
    ids=["one-class", "no-triplet", "bs2-two-classes", "bs2-one-class"],
)
def test_edge_batches_do_not_crash(key: str, labels: list[int]) -> None:
    embeds = torch.randn(len(labels), 8, requires_grad=True)
    loss = build(key)(embeds, torch.tensor(labels))
    assert torch.isfinite(loss)
    loss.backward()
    assert embeds.grad is not None and torch.isfinite(embeds.grad).all()
    if CRITERIA.get(key).requires_batchminer:
        assert loss.item() == 0.0


@pytest.mark.parametrize("key", CRITERIA.keys())
def test_duplicate_samples_have_finite_gradients(key: str) -> None:
    base = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    embeds = base[[0, 0, 1, 1, 2, 2]].clone().requires_grad_(True)
    build(key)(embeds, torch.tensor([0, 0, 1, 1, 2, 2])).backward()
    assert torch.isfinite(embeds.grad).all()


def test_margin_param_groups() -> None:
    crit = build("margin", loss_margin_beta_lr=1e-3)
    (group,) = crit.param_groups()
    assert group["lr"] == 1e-3 and group["weight_decay"] == 0.0
    assert group["params"][0] is crit.beta and crit.beta.shape == (N_CLASSES,)
    assert torch.allclose(crit.beta, torch.full((N_CLASSES,), 1.2))
    constant = build("margin", loss_margin_beta_constant=True)
    assert constant.param_groups() == [] and list(constant.parameters()) == []
    assert build("triplet").param_groups() == []


def test_margin_nu_regulariser_gradient_on_beta() -> None:
    embeds, labels = make_batch(seed=2)
    torch.manual_seed(0)
    mined = build("margin").miner(embeds, labels)
    grads = {}
    for nu in (0.0, 0.5):
        crit = build("margin", loss_margin_nu=nu)
        crit.miner = FixedMiner(mined)
        crit(embeds, labels).backward()
        grads[nu] = crit.beta.grad.clone()
    counts = torch.bincount(labels[mined[:, 0]], minlength=N_CLASSES).float()
    x, margin = embeds.detach(), crit.margin
    active = 0  # non-zero hinge terms: the divisor the regulariser shares with the loss
    for a, p, n in mined.tolist():
        beta = crit.beta[labels[a]].item()
        active += (dist(x[a], x[p]) - beta + margin > 0) + (beta - dist(x[a], x[n]) + margin > 0)
    assert 0 < active < 2 * len(mined) and active != len(mined)  # tells the divisors apart
    assert torch.allclose(grads[0.5] - grads[0.0], 0.5 * counts / active, atol=1e-6)


def test_margin_nu_leaves_a_constant_beta_alone() -> None:
    """ν regularises a learnable β only (as Wu et al.): with a constant β it adds nothing."""
    embeds, labels = make_batch(seed=2)
    torch.manual_seed(0)
    mined = build("margin").miner(embeds, labels)
    losses = []
    for nu in (0.0, 0.5):
        crit = build("margin", loss_margin_beta_constant=True, loss_margin_nu=nu)
        crit.miner = FixedMiner(mined)
        losses.append(crit(embeds, labels).item())
    assert losses[0] > 0 and losses[0] == losses[1]


def test_margin_beta_indexed_by_anchor_class() -> None:
    embeds, labels = make_batch(seed=3)
    crit = build("margin")
    crit.miner = FixedMiner(torch.tensor([[0, 1, 3], [3, 4, 0]]))
    crit(embeds, labels).backward()
    touched = crit.beta.grad.nonzero().squeeze(1).tolist()
    assert set(touched) <= {0, 1}


class TupleMiner(BatchMiner):
    output = "anchor_positive_negative_sets"
    registry_key = "npair"


def test_incompatible_miner_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MINERS._entries, "npair", TupleMiner)
    assert "npair" not in CRITERIA.get("triplet").allowed_miners
    with pytest.raises(ConfigError) as error:
        criteria.build(make_opt(loss="triplet", batch_mining="npair"))
    triplet_miners = [key for key, miner in MINERS.items() if miner.output == "triplets"]
    assert {"distance", "random", "semihard", "softhard", "rho_distance"} <= set(triplet_miners)
    assert str(error.value) == (
        "--batch_mining: miner 'npair' cannot be used with --loss triplet; "
        f"allowed: {', '.join(triplet_miners)}"
    )


@pytest.mark.parametrize(
    ("miner", "masquerade"), [("random_distance", "distance"), ("intra_random", "random")]
)
def test_control_miners_have_their_own_keys(miner: str, masquerade: str) -> None:
    """The reference's ``random_distance``/``intra_random`` report ``'distance'``/``'random'``;
    here the compatibility check and the loss see the real key."""
    crit = criteria.build(make_opt(loss="snr", batch_mining=miner))
    assert crit.miner.registry_key == miner != masquerade
    assert miner in CRITERIA.get("triplet").allowed_miners
    assert crit.reg_lambda == 0.005  # SNR's "no regulariser with distance" is for distance only


def test_unknown_keys_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="--loss"):
        criteria.build(make_opt(loss="tripletz"))
    with pytest.raises(ConfigError, match="--batch_mining"):
        criteria.build(make_opt(loss="margin", batch_mining="distanse"))


@pytest.mark.parametrize("key", CRITERIA.keys())
def test_every_allowed_miner_works(key: str) -> None:
    embeds, labels = make_batch()
    for miner in CRITERIA.get(key).allowed_miners:
        loss = criteria.build(make_opt(loss=key, batch_mining=miner))(embeds, labels)
        assert torch.isfinite(loss)


def test_semihard_uses_loss_margin() -> None:
    crit = criteria.build(
        make_opt(loss="triplet", batch_mining="semihard", loss_triplet_margin=0.4)
    )
    assert crit.miner.margin == 0.4
    crit = criteria.build(make_opt(loss="contrastive", batch_mining="semihard"))
    assert crit.miner.margin == 0.2


def test_snr_regulariser_off_with_distance_miner_only() -> None:
    assert build("snr").reg_lambda == 0.0  # default miner here: distance
    for miner in ("semihard", "rho_distance", "random"):
        assert build("snr", batch_mining=miner, loss_snr_reg_lambda=0.01).reg_lambda == 0.01


def test_snr_no_active_triplet_is_zero_not_nan() -> None:
    embeds = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.1, 0.0], [-1.0, 0.0, 5.0], [-1.0, 0.1, 5.0]])
    embeds.requires_grad_(True)
    crit = build("snr", loss_snr_margin=0.0)
    crit.miner = FixedMiner(torch.tensor([[0, 1, 2], [2, 3, 0]]))
    loss = crit(embeds, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(embeds.grad).all()


def test_multisimilarity_nothing_mined_is_zero() -> None:
    """Positives far more similar than every negative: no pair survives the mining (the
    reference's issue #3 crash); the loss is 0 with finite gradients."""
    embeds = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]], requires_grad=True)
    loss = build("multisimilarity")(embeds, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(embeds.grad).all()
    labels = torch.tensor([0, 0, 1, 1])
    assert naive_multisimilarity(build("multisimilarity"), embeds.detach(), labels, None) == 0.0


def test_multisimilarity_and_histogram_use_cosine_similarity() -> None:
    embeds, labels = make_batch(seed=5)
    for key in ("multisimilarity", "histogram"):
        crit = build(key)
        assert crit(embeds * 7.0, labels).item() == pytest.approx(crit(embeds, labels).item())


def test_histogram_separated_classes_zero_overlapping_positive() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    separated = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    assert build("histogram")(separated, labels).item() == pytest.approx(0.0, abs=1e-7)
    swapped = separated[[0, 2, 1, 3]]  # positives opposite, negatives identical
    assert build("histogram")(swapped, labels).item() == pytest.approx(1.0)


def test_histogram_needs_two_nodes() -> None:
    with pytest.raises(ConfigError, match="--loss_histogram_nbins"):
        build("histogram", loss_histogram_nbins=1)


def test_margin_reference_pair_count_divides_by_active_triplets() -> None:
    """Both terms of the first triplet are active, one of the second: divisors 3 and 2."""
    embeds = torch.tensor([[0.0, 0.0], [1.3, 0.0], [0.5, 0.0], [3.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    losses = {}
    for flag in (False, True):
        crit = build("margin", loss_margin_reference_pair_count=flag)
        crit.miner = FixedMiner(torch.tensor([[0, 1, 2], [3, 2, 0]]))
        losses[flag] = crit(embeds, labels).item()
    assert losses[True] == pytest.approx(losses[False] * 3 / 2)


@pytest.mark.parametrize(
    ("key", "overrides"),
    [
        ("snr", {"batch_mining": "semihard"}),
        ("multisimilarity", {"loss_multisimilarity_margin": 0.5}),
        ("histogram", {"loss_histogram_nbins": 11}),
    ],
)
def test_gradients_match_finite_differences(key: str, overrides: dict) -> None:
    """Analytic gradients of the vectorised loss equal central finite differences (float64)."""
    embeds, labels = make_batch(per_class=2, dim=4, seed=9)
    embeds = embeds.detach().double().requires_grad_(True)
    crit = build(key, **overrides)
    if crit.requires_batchminer:
        torch.manual_seed(0)
        crit.miner = FixedMiner(crit.miner(embeds, labels))
    assert torch.autograd.gradcheck(lambda x: crit(x, labels), (embeds,), eps=1e-6, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("key", list(NAIVE))
def test_runs_on_the_embeddings_device(key: str) -> None:
    """This module's losses on CUDA embeddings with CPU labels (as the DataLoader gives them)."""
    embeds, labels = make_batch()
    crit = build(key).to("cuda")
    cuda_embeds = embeds.detach().to("cuda").requires_grad_(True)
    loss = crit(cuda_embeds, labels)
    loss.backward()
    assert loss.device == cuda_embeds.device and torch.isfinite(cuda_embeds.grad).all()


MINING_LOSSES = [key for key, loss in CRITERIA.items() if loss.requires_batchminer]


@pytest.mark.parametrize("key", MINING_LOSSES)
def test_tuples_mined_elsewhere_replace_the_miner(key: str) -> None:
    """``criterion(embeds, labels, mined=T)`` equals the loss whose miner returned T, and never
    calls its own miner (a defense mines on benign embeddings, trains on adversarial ones)."""
    embeds, labels = make_batch(per_class=3, dim=6, seed=2)
    crit = build(key)
    torch.manual_seed(0)
    mined = crit.miner(embeds, labels)
    crit.miner = FixedMiner(mined)
    expected = crit(embeds, labels)

    def refuse(*_: object) -> torch.Tensor:
        raise AssertionError("the loss mined although tuples were given")

    crit.miner = refuse
    assert crit(embeds, labels, mined=mined).item() == pytest.approx(expected.item(), abs=1e-6)


def test_euclidean_triplet_is_pytorchs_triplet_margin_loss() -> None:
    embeds, labels = make_batch(per_class=3, dim=6, seed=3)
    crit = build("triplet", loss_triplet_distance="euclidean", batch_mining="anchor_random")
    mined = crit.miner(embeds, labels)
    a, p, n = (embeds[mined[:, i]] for i in range(3))
    reference = torch.nn.functional.triplet_margin_loss(a, p, n, margin=0.2, eps=0.0)
    assert crit(embeds, labels, mined=mined).item() == pytest.approx(reference.item(), abs=1e-6)
