"""DADA (``--loss dadaproxy``): the proxy loss and the discrepancies against naive loops, the
extended batch, the min–max (D-steps lower L_D, G-steps raise it), where gradients go, the flags
and their reference spellings (methods.md §B.1–§B.3)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import criteria
import parameters
from criteria.base import Criterion
from criteria.dada_discriminators import first_positive_pairs, l1_discrepancy, nuclear_discrepancy
from criteria.dadaproxy import PREFIX, REFERENCE_KEYS, SWITCHES, VALUE_FLAGS
from utilities.errors import ConfigError

N_CLASSES = 5
DIM = 6


pytestmark = pytest.mark.usefixtures("one_thread")


def options(*flags: str, n_classes: int = N_CLASSES, dim: int = DIM):
    opt = parameters.build_parser().parse_args(["--loss", "dadaproxy", *flags])
    opt.n_classes, opt.embed_dim = n_classes, dim
    return opt


def build(*flags: str, n_classes: int = N_CLASSES, dim: int = DIM) -> Criterion:
    torch.manual_seed(0)
    return criteria.build(options(*flags, n_classes=n_classes, dim=dim))


def fix_coefficients(crit: Criterion, pair: float = 0.3, mix: float = 0.6) -> None:
    """Every Beta draw returns a constant: Beta(2, 2) -> ``pair``, the sample→proxy mix's
    -> ``mix``."""

    def coefficient(like: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
        value = pair if (alpha, beta) == (2.0, 2.0) else mix
        return torch.tensor(value, dtype=like.dtype, device=like.device)

    crit.coefficient = coefficient


def unit(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(a * a for a in v))
    return [a / norm for a in v]


def dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v, strict=True))


def naive_proxy_loss(crit: Criterion, x: torch.Tensor, y: torch.Tensor) -> float:
    """§B.1 item 7, one term at a time: per batch column j (``per_sample_pos``), per proxy with a
    positive (default) or, with ``proxy_dim`` 1, per sample over the proxies."""
    xs, labels = [unit(v) for v in x.tolist()], y.tolist()
    ps = [unit(p) for p in crit.proxies.tolist()]
    a_pos, d_pos, a_neg, d_neg = crit.pos_alpha, crit.pos_delta, crit.neg_alpha, crit.neg_delta

    def pos_term(j: int) -> float:  # column j: the samples sharing y_j against p_{y_j}
        p = ps[labels[j]]
        same = [i for i in range(len(xs)) if labels[i] == labels[j]]
        return math.log(1 + sum(math.exp(-a_pos * (dot(xs[i], p) - d_pos)) for i in same))

    if crit.proxy_dim == 1:  # row i: the reference's log-sum-exp along the other axis
        pos = [
            math.log(
                1
                + sum(
                    math.exp(-a_pos * (dot(xs[i], ps[labels[j]]) - d_pos))
                    for j in range(len(xs))
                    if labels[j] == labels[i]
                )
            )
            for i in range(len(xs))
        ]
        neg = [
            math.log(
                1
                + sum(
                    math.exp(a_neg * (dot(xs[i], ps[c]) - d_neg))
                    for c in range(len(ps))
                    if c != labels[i]
                )
            )
            for i in range(len(xs))
        ]
        return sum(pos) / len(pos) + sum(neg) / len(neg)
    if crit.per_sample_pos:
        pos = [pos_term(j) for j in range(len(xs))]
    else:
        pos = [pos_term(labels.index(c)) for c in sorted(set(labels))]
    neg = [
        math.log(
            1
            + sum(
                math.exp(a_neg * (dot(xs[i], ps[c]) - d_neg))
                for i in range(len(xs))
                if labels[i] != c
            )
        )
        for c in range(len(ps))
    ]
    return sum(pos) / len(pos) + sum(neg) / len(neg)


NAIVE = {"dadaproxy": naive_proxy_loss}  # tests/test_criteria.py checks every loss has one
BATCHES = [[0, 0, 1, 1, 2, 2, 3, 4], [1, 3, 3, 3, 0], [2, 2, 2, 2], [4, 1]]
PROXY_VARIANTS = [
    (),
    ("--loss_dadaproxy_per_sample_pos",),
    ("--loss_dadaproxy_proxy_dim", "1"),
    ("--loss_oproxy_pos_alpha", "4", "--loss_oproxy_neg_alpha", "7", "--loss_oproxy_neg_delta",
     "0.2", "--loss_oproxy_pos_delta", "-0.3"),
    ("--loss_dadaproxy_per_sample_pos", "--loss_dadaproxy_pos_alpha", "3"),
    ("--loss_dadaproxy_proxy_dim", "1", "--loss_dadaproxy_neg_alpha", "5"),
]  # fmt: skip


@pytest.mark.parametrize("flags", PROXY_VARIANTS)
@pytest.mark.parametrize("labels", BATCHES)
def test_proxy_loss_matches_naive_loop(flags: tuple[str, ...], labels: list[int]) -> None:
    crit = build(*flags).double()
    generator = torch.Generator().manual_seed(len(labels))
    x = torch.randn(len(labels), DIM, generator=generator, dtype=torch.float64)
    y = torch.tensor(labels)
    loss = crit.proxy_loss(x, y)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(naive_proxy_loss(crit, x, y), rel=1e-9, abs=1e-9)


def test_default_averaging_is_proxy_anchor_and_the_flag_the_per_column_mean() -> None:
    alpha, delta = "9", "0.2"
    dada = build(
        "--loss_dadaproxy_pos_alpha",
        alpha,
        "--loss_dadaproxy_neg_alpha",
        alpha,
        "--loss_dadaproxy_pos_delta",
        delta,
        "--loss_dadaproxy_neg_delta",
        "-" + delta,
    )
    opt = options("--loss_proxy_anchor_alpha", alpha, "--loss_proxy_anchor_delta", delta)
    opt.loss = "proxy_anchor"
    anchor = criteria.build(opt)
    with torch.no_grad():
        anchor.proxies.copy_(dada.proxies)
    dada, anchor = dada.double(), anchor.double()
    x = torch.randn(7, DIM, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 0, 1, 3, 3])  # unequal class counts: the averagings differ
    assert dada.proxy_loss(x, y).item() == pytest.approx(anchor(x, y).item(), rel=1e-12)
    per_sample = build("--loss_dadaproxy_per_sample_pos").double()
    default = build().double()  # the same proxies (same seed)
    cos = F.normalize(x, dim=1) @ F.normalize(default.proxies, dim=1).T
    terms = {c: math.log1p(torch.exp(-32 * (cos[y == c, c] - 0.1)).sum().item()) for c in (0, 1, 3)}
    per_column = sum(terms[c] for c in y.tolist()) / len(y)  # one term per batch column j
    per_proxy = sum(terms.values()) / len(terms)
    difference = per_sample.proxy_loss(x, y) - default.proxy_loss(x, y)
    assert difference.item() == pytest.approx(per_column - per_proxy, rel=1e-9)
    assert abs(per_column - per_proxy) > 1e-3


def test_proxy_loss_stays_finite_at_the_reference_scales() -> None:
    crit = build("--loss_dadaproxy_pos_alpha", "100", "--loss_dadaproxy_neg_alpha", "200")
    x = crit.proxies.detach()[[0, 1, 2, 0]].clone().requires_grad_(True)  # cos = 1 with proxies
    y = torch.tensor([1, 2, 3, 3])
    loss = crit.proxy_loss(x, y)  # float32: exp(200 · 1.1) would overflow
    loss.backward()
    assert torch.isfinite(x.grad).all()
    assert loss.item() == pytest.approx(naive_proxy_loss(crit, x.double(), y), rel=1e-5)


def test_discrepancies_by_hand() -> None:
    source, mixed = torch.randn(7, 4, dtype=torch.float64), torch.randn(7, 4, dtype=torch.float64)
    s, t = source.softmax(1), mixed.softmax(1)
    singular = torch.linalg.svdvals(s).sum() - torch.linalg.svdvals(t).sum()
    nuclear = torch.linalg.matrix_norm(s, "nuc") - torch.linalg.matrix_norm(t, "nuc")
    assert nuclear_discrepancy(source, mixed).item() == pytest.approx(singular.item() / 7)
    assert nuclear_discrepancy(source, mixed).item() == pytest.approx(nuclear.item() / 7)
    l1 = sum(abs(a - b) for a, b in zip(s.flatten().tolist(), t.flatten().tolist(), strict=True))
    assert l1_discrepancy(source, mixed).item() == pytest.approx(l1 / 28)


def naive_first_pairs(labels: list[int]) -> tuple[list[int], list[int]]:
    """The reference: all ordered positive pairs (a ≠ p) row-major, the first per label, labels
    ascending (np.unique's return_index)."""
    pairs = [(a, p) for a in range(len(labels)) for p in range(len(labels))
             if a != p and labels[a] == labels[p]]  # fmt: skip
    first = {}
    for a, p in pairs:
        first.setdefault(labels[a], (a, p))
    chosen = [first[label] for label in sorted(first)]
    return [a for a, _ in chosen], [p for _, p in chosen]


def test_first_positive_pairs_match_the_reference_rule() -> None:
    generator = torch.Generator().manual_seed(3)
    for _ in range(30):
        labels = torch.randint(0, 6, (int(torch.randint(1, 12, (1,), generator=generator)),),
                               generator=generator)  # fmt: skip
        anchors, positives = first_positive_pairs(labels)
        assert (anchors.tolist(), positives.tolist()) == naive_first_pairs(labels.tolist())


def test_pos_class_mix_extends_the_batch() -> None:
    crit = build("--loss_dadaproxy_pos_class_mix")
    fix_coefficients(crit, pair=0.3)
    z, y = torch.randn(7, DIM), torch.tensor([3, 1, 3, 0, 1, 1, 2])
    zz, yy, pp = crit.extended_batch(z, y, crit.proxies)
    assert yy.tolist() == [3, 1, 3, 0, 1, 1, 2, 1, 3]  # label 1: (1, 4); label 3: (0, 2)
    assert torch.allclose(zz[:7], z)
    assert torch.allclose(zz[7], 0.3 * z[1] + 0.7 * z[4])
    assert torch.allclose(zz[8], 0.3 * z[0] + 0.7 * z[2])
    assert torch.equal(pp, crit.proxies[yy])
    plain = build()
    zz, yy, pp = plain.extended_batch(z, y, plain.proxies)
    assert zz is z and torch.equal(yy, y) and torch.equal(pp, plain.proxies[y])


@pytest.mark.parametrize("shift", [1.0, 0.5, -0.25])
def test_random_mix_with_shift_scale(shift: float) -> None:
    crit = build("--shift_scale", str(shift))
    fix_coefficients(crit, mix=0.6)
    z, p = torch.randn(4, DIM), torch.randn(4, DIM)
    toward = 0.6 * shift if shift >= 0 else 1 - 0.6 * (shift + 1)  # the weight of p
    assert torch.allclose(crit.mix(z, p, None), (1 - toward) * z + toward * p)


def by_hand(crit: Criterion, z: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(L_G, L_D) from the terms of §B.1 items 2–6 (fixed coefficient 0.6, no dropout)."""
    p = crit.proxies[y]
    x, x_mix, p_hat = (F.normalize(v, dim=1) for v in (z, 0.4 * z + 0.6 * p, p))
    domain = sum(F.cross_entropy(crit.domain(v), torch.full((len(z),), k)) for k, v in
                 enumerate((x, x_mix, p_hat)))  # fmt: skip
    source, target = crit.category(x), crit.category(x_mix)
    category = 2 * F.cross_entropy(source, y)
    nwd = 0.5 * (torch.linalg.matrix_norm(source.softmax(1), "nuc")
                 - torch.linalg.matrix_norm(target.softmax(1), "nuc")) / len(z)  # fmt: skip
    r = crit.d_dis_ratio
    generator = 0.0075 * naive_proxy_loss(crit, z, y) + r * (category + nwd) - (1 - r) * domain
    return generator.item(), ((1 - r) * domain + r * (category - nwd)).item()


def test_generator_and_discriminator_losses_combine_the_terms() -> None:
    crit = build("--dropout", "0").double()
    fix_coefficients(crit)
    z, y = torch.randn(8, DIM, dtype=torch.float64), torch.tensor([0, 0, 1, 1, 2, 2, 3, 4])
    expected_g, expected_d = by_hand(crit, z, y)
    assert crit(z, y).item() == pytest.approx(expected_g, rel=1e-9)
    assert crit.discriminator_loss(z, y).item() == pytest.approx(expected_d, rel=1e-9)


def test_discriminator_steps_lower_and_generator_steps_raise_the_discriminator_loss() -> None:
    crit = build(n_classes=4, dim=8)
    fix_coefficients(crit)
    torch.manual_seed(1)
    net = nn.Linear(16, 8)
    images, labels = torch.randn(32, 16), torch.arange(4).repeat_interleave(8)

    def measured() -> float:  # same coefficients, same dropout masks: a function of the weights
        torch.manual_seed(123)
        with torch.no_grad():
            return crit.discriminator_loss(net(images), labels).item()

    discriminators = torch.optim.Adam(crit.discriminator_groups())
    start = measured()
    for _ in range(15):
        loss = crit.discriminator_loss(net(images).detach(), labels)
        discriminators.zero_grad()
        loss.backward()
        discriminators.step()
    trained = measured()
    assert trained < start - 0.1
    network = torch.optim.Adam([{"params": net.parameters(), "lr": 1e-2}, *crit.param_groups()])
    for _ in range(5):
        network.zero_grad()
        crit(net(images), labels).backward()
        network.step()
    assert measured() > trained + 0.1


def test_gradients_of_each_loss_reach_only_their_side() -> None:
    crit = build("--loss_dadaproxy_pos_class_mix")
    z = torch.randn(8, DIM, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4])
    crit(z, y).backward()
    assert z.grad.abs().sum() > 0 and crit.proxies.grad.abs().sum() > 0
    crit.zero_grad(set_to_none=True)
    leaf = z.detach().requires_grad_(True)
    crit.discriminator_loss(leaf, y).backward()
    assert leaf.grad is None and crit.proxies.grad is None
    for module in (crit.domain, crit.category):
        for name, param in module.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
            assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize(("mode", "side"), [("individual", "network"), ("linear", "discriminator")])
def test_learnt_mix_weights_train_on_the_reference_side(mode: str, side: str) -> None:
    crit = build("--mix_mode", mode)
    groups = crit.param_groups() if side == "network" else crit.discriminator_groups()
    (group,) = [g for g in groups if any(p is crit.mix_weight for p in g["params"])]
    assert group["lr"] == 5e-4 and group["weight_decay"] == 0.0
    z, y = torch.randn(6, DIM, requires_grad=True), torch.tensor([0, 0, 1, 1, 2, 2])
    crit.discriminator_loss(z, y).backward()
    assert (crit.mix_weight.grad is not None) == (side == "discriminator")
    crit.zero_grad(set_to_none=True)
    crit(z, y).backward()
    assert crit.mix_weight.grad is not None and z.grad.abs().sum() > 0


def test_parameter_groups_and_initialisation() -> None:
    crit = build(n_classes=40, dim=64)
    (group,) = crit.param_groups()
    assert group["params"] == [crit.proxies] and group["lr"] == 0.04
    assert group["weight_decay"] == 0.0
    assert crit.proxies.std().item() == pytest.approx(1 / 8, rel=0.05)
    held = {id(p) for g in crit.discriminator_groups() for p in g["params"]}
    assert held == {id(p) for m in (crit.domain, crit.category) for p in m.parameters()}
    for g in crit.discriminator_groups():
        assert (g["lr"], g["weight_decay"]) == (5e-4, 1e-4)
    assert (crit.discriminator_steps, crit.generator_warmup_epochs) == (3, 1)
    assert crit.domain[-1].out_features == 3 and crit.category[-1].out_features == 40
    bns = build("--fd2_bn", "--fc2_bn", n_classes=40, dim=64)
    assert isinstance(bns.domain[-1], nn.BatchNorm1d) and isinstance(
        bns.category[-1], nn.BatchNorm1d
    )


def test_discriminators_are_saved_and_restored() -> None:
    crit = build()
    with torch.no_grad():
        for param in crit.parameters():
            param.add_(torch.randn_like(param))
    state = crit.state_dict()
    assert any(k.startswith("domain.") for k in state) and any(
        k.startswith("category.") for k in state
    )
    restored = build()
    restored.load_state_dict(state)
    x = torch.randn(5, DIM)
    assert torch.equal(restored.domain(x), crit.domain(x))


def test_coefficients_redrawn_each_call_from_the_global_seed() -> None:
    crit = build("--dropout", "0", "--loss_dadaproxy_pos_class_mix")
    z, y = torch.randn(6, DIM), torch.tensor([0, 0, 1, 1, 2, 2])
    torch.manual_seed(5)
    first, second = crit.discriminator_loss(z, y), crit.discriminator_loss(z, y)
    torch.manual_seed(5)
    assert torch.equal(crit.discriminator_loss(z, y), first) and not torch.equal(first, second)
    m = crit.coefficient(z.double(), 0.5, 0.5)
    assert m.dtype == torch.float64 and m.device == z.device and 0 <= m.item() <= 1


def test_float32_edge_batches_are_finite() -> None:
    crit = build()
    for labels in ([2, 2, 2, 2], [0, 1], [4, 4], [0, 1, 2, 3]):
        z = torch.randn(len(labels), DIM, requires_grad=True)
        loss = crit(z, torch.tensor(labels)) + crit.discriminator_loss(z, torch.tensor(labels))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


# §B.3, column "Default (parameters.py)", by reference key.
REFERENCE_DEFAULTS = {
    "oproxy_ratio": 0.0075, "dis_gamma": 1.0, "d_dis_ratio": 0.01, "d_discrepancy_ratio": 0.5,
    "dis_mode": "nwd", "loss_adv_classifier_lr": 5e-4, "loss_adv_proxy_lr": 0.04,
    "dis_decay": 1e-4, "fd_fc1_dim": 512, "fc_fc1_dim": 512, "fc_fc2_dim": 128, "fd2_bn": False,
    "fc2_bn": False, "dropout": 0.5, "g_step": 1, "d_step": 3, "d_warmup": 1,
    "mix_mode": "random", "shift_scale": 1.0, "mix_alpha": 0.5, "mix_beta": 0.5,
    "pos_class_mix": False, "proxy_dim": 0, "normal": True, "loss_oproxy_pos_alpha": 32,
    "loss_oproxy_neg_alpha": 32, "loss_oproxy_pos_delta": 0.1, "loss_oproxy_neg_delta": -0.1,
}  # fmt: skip


def test_defaults_are_the_reference_defaults() -> None:
    opt = options()
    assert set(REFERENCE_KEYS) == set(REFERENCE_DEFAULTS)
    assert {key: getattr(opt, dest) for key, dest in REFERENCE_KEYS.items()} == REFERENCE_DEFAULTS
    assert opt.loss_dadaproxy_per_sample_pos is False


@pytest.mark.parametrize(("name", "key"), [(name, key) for name, key, _ in VALUE_FLAGS])
def test_reference_spellings_parse_to_the_same_dest(name: str, key: str) -> None:
    special = {"dis_mode": "l1", "mix_mode": "linear", "proxy_dim": "1", "neg_delta": "-0.3"}
    value = special.get(name, "0.25" if isinstance(REFERENCE_DEFAULTS[key], float) else "7")
    ours, theirs = options(f"--{PREFIX}{name}", value), options(f"--{key}", value)
    assert getattr(ours, PREFIX + name) == getattr(theirs, PREFIX + name) != REFERENCE_DEFAULTS[key]
    assert REFERENCE_KEYS[key] == PREFIX + name


def test_switches_and_their_reference_spellings() -> None:
    for name in SWITCHES:
        assert getattr(options(f"--{name}"), PREFIX + name) is True
        assert getattr(options(f"--{PREFIX}{name}"), PREFIX + name) is True
    assert options("--normal").loss_dadaproxy_normal is False  # the reference's store_false
    assert options("--loss_dadaproxy_no_normal").loss_dadaproxy_normal is False


def test_no_normal_feeds_raw_vectors() -> None:
    crit = build("--loss_dadaproxy_no_normal", "--dropout", "0")
    fix_coefficients(crit)
    z, y = 5 * torch.randn(6, DIM), torch.tensor([0, 0, 1, 1, 2, 2])
    expected = F.cross_entropy(crit.domain(z), torch.zeros(6, dtype=torch.long))
    domain, _, _ = crit.adversarial_terms(z, y, crit.proxies[y], None)
    p = crit.proxies[y]
    mixed = F.cross_entropy(crit.domain(0.4 * z + 0.6 * p), torch.ones(6, dtype=torch.long))
    proxies = F.cross_entropy(crit.domain(p), torch.full((6,), 2))
    assert domain.item() == pytest.approx((expected + mixed + proxies).item(), rel=1e-5)


@pytest.mark.parametrize(
    ("flags", "spc", "match"),
    [
        (("--g_step", "2"), 2, "g_step: found 2, expected 1"),
        (("--loss_dadaproxy_per_sample_pos", "--proxy_dim", "1"), 2, "per_sample_pos"),
        (("--pos_class_mix",), 1, "samples_per_class is 1"),
    ],
)
def test_unsupported_settings_are_config_errors(flags: tuple[str, ...], spc: int, match: str):
    with pytest.raises(ConfigError, match=match):
        criteria.build(options(*flags, "--samples_per_class", str(spc)))


def test_one_training_class_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="dadaproxy"):
        criteria.build(options(n_classes=1))
