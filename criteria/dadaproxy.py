"""DADA: data-augmented domain adaptation of a Proxy-Anchor loss (official ``Noahsark/DADA``,
``criteria/dadaproxy.py``; methods.md §B.1–§B.3, §B.8)."""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from batch_mining.base import BatchMiner
from criteria import CRITERIA
from criteria.base import Criterion
from criteria.dada_discriminators import (
    DISCREPANCIES,
    CategoryDiscriminator,
    DomainDiscriminator,
    cross_entropy_to,
    first_positive_pairs,
)
from criteria.proxy_utils import require_classes
from utilities.errors import ConfigError
from utilities.flag_types import (
    Range,
    finite_float,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    probability,
)

PREFIX = "loss_dadaproxy_"
# (our name, the reference's key, argparse keywords): flag --loss_dadaproxy_<name>, alias
# --<reference key>, defaults of the reference's parameters.py (methods.md §B.3).
VALUE_FLAGS: list[tuple[str, str, dict[str, Any]]] = [
    ("oproxy_ratio", "oproxy_ratio", {"type": nonnegative_float, "default": 0.0075,
     "help": "w_p: weight of the proxy loss in the generator loss"}),
    ("dis_gamma", "dis_gamma", {"type": nonnegative_float, "default": 1.0,
     "help": "γ: weight of the adversarial terms in the generator loss"}),
    ("d_dis_ratio", "d_dis_ratio", {"type": probability, "default": 0.01,
     "help": "r: weight of the category terms; the domain term weighs 1 − r"}),
    ("d_discrepancy_ratio", "d_discrepancy_ratio", {"type": nonnegative_float, "default": 0.5,
     "help": "λ_d: weight of the discrepancy of the category discriminator"}),
    ("dis_mode", "dis_mode", {"choices": sorted(DISCREPANCIES), "default": "nwd",
     "help": "discrepancy: nwd (nuclear norms, DALN) or l1"}),
    ("classifier_lr", "loss_adv_classifier_lr", {"type": positive_float, "default": 5e-4,
     "help": "learning rate of the discriminators (their own Adam)"}),
    ("proxy_lr", "loss_adv_proxy_lr", {"type": positive_float, "default": 0.04,
     "help": "learning rate of the proxies: absolute, not a multiple of --lr; weight decay 0"}),
    ("dis_decay", "dis_decay", {"type": nonnegative_float, "default": 1e-4,
     "help": "weight decay of the discriminators"}),
    ("fd_fc1_dim", "fd_fc1_dim", {"type": positive_int, "default": 512,
     "help": "hidden width of the domain discriminator"}),
    ("fc_fc1_dim", "fc_fc1_dim", {"type": positive_int, "default": 512,
     "help": "first hidden width of the category discriminator"}),
    ("fc_fc2_dim", "fc_fc2_dim", {"type": positive_int, "default": 128,
     "help": "second hidden width of the category discriminator"}),
    ("dropout", "dropout", {"type": Range(float, 0, 1, open_high=True), "default": 0.5,
     "help": "dropout of the category discriminator"}),
    ("g_step", "g_step", {"type": positive_int, "default": 1,
     "help": "generator updates per batch: only 1 (one network update per batch)"}),
    ("d_step", "d_step", {"type": positive_int, "default": 3,
     "help": "discriminator updates per batch, before the generator's"}),
    ("d_warmup", "d_warmup", {"type": nonnegative_int, "default": 1,
     "help": "first epochs in which only the discriminators train"}),
    ("mix_mode", "mix_mode", {"choices": ["random", "individual", "linear"], "default": "random",
     "help": "sample→proxy mix: random (m ~ Beta), individual (learnt weight per dimension, "
     "trained with the network) or linear (learnt 2D×D map, trained with the discriminators)"}),
    ("shift_scale", "shift_scale", {"type": Range(float, -1, 1, open_low=True), "default": 1.0,
     "help": "s of the random mix: (1−ms)z + ms·p for s >= 0, ms'z + (1−ms')p, s' = s+1, else"}),
    ("mix_alpha", "mix_alpha", {"type": positive_float, "default": 0.5,
     "help": "α of the Beta(α, β) of the sample→proxy mix"}),
    ("mix_beta", "mix_beta", {"type": positive_float, "default": 0.5,
     "help": "β of the Beta(α, β) of the sample→proxy mix"}),
    ("proxy_dim", "proxy_dim", {"type": Range(int, 0, 1), "default": 0,
     "help": "0: Proxy-Anchor; 1: the reference's per-sample log-sum-exp over the proxies"}),
    ("pos_alpha", "loss_oproxy_pos_alpha", {"type": positive_float, "default": 32.0,
     "help": "α⁺ of the proxy loss"}),
    ("neg_alpha", "loss_oproxy_neg_alpha", {"type": positive_float, "default": 32.0,
     "help": "α⁻ of the proxy loss"}),
    ("pos_delta", "loss_oproxy_pos_delta", {"type": finite_float, "default": 0.1,
     "help": "δ⁺ of the proxy loss"}),
    ("neg_delta", "loss_oproxy_neg_delta", {"type": finite_float, "default": -0.1,
     "help": "δ⁻ of the proxy loss (negative exponent α⁻(s − δ⁻))"}),
]  # fmt: skip
SWITCHES = {  # store_true switches: our name = the reference's key
    "fd2_bn": "BatchNorm on the domain discriminator's output",
    "fc2_bn": "BatchNorm on the category discriminator's output",
    "pos_class_mix": "add one same-class mix per label with two samples (needs SPC >= 2)",
}
# Reference YAML key -> our argparse dest, for the configuration loader.
REFERENCE_KEYS: dict[str, str] = {
    **{key: PREFIX + name for name, key, _ in VALUE_FLAGS},
    **{name: PREFIX + name for name in SWITCHES},
    "normal": PREFIX + "normal",
}


@CRITERIA.register("dadaproxy")
class DadaProxyLoss(Criterion):
    """DADA (Ren et al., "Towards Improved Proxy-based Deep Metric Learning via Data-Augmented
    Domain Adaptation", AAAI 2024, arXiv 2401.00617) on Proxy-Anchor, as the official code.

    Input: embeddings Z (B×D), labels y in 0..C−1; P the raw C×D proxies (init randn/8).
    1. ``pos_class_mix``: per label with ≥ 2 samples, its first pair (a, p) gives
       z̃ = m z_a + (1−m) z_p, m ~ Beta(2, 2); Z′ = [Z; Z̃], y′ = [y; y_a], P′ = [P_y; P_{y_a}]
       (the reference's mixed proxy m P_{y_a} + (1−m) P_{y_a} is P_{y_a}). Else Z′ = Z, P′ = P_y.
    2. Mix: Z_mix = (1 − m s) Z′ + m s P′, m ~ Beta(``mix_alpha``, ``mix_beta``), drawn anew for
       the domain and for the category discriminator in every call (as the reference's two
       ``mixup`` calls). ``individual``: w ⊙ Z′ + (1 − w) ⊙ P′, w (1×D) trained with the
       network (the reference's proxy optimizer, at the discriminators' lr); ``linear``:
       [Z′, P′] W, W (2D×D) trained with the discriminators. Both init Xavier-uniform, gain 1.414.
    3. x̂ = n(Z′), x̂_mix = n(Z_mix), p̂ = n(P′) (L2, unless ``--loss_dadaproxy_no_normal``).
    4. L_U = CE(U(x̂), 0) + CE(U(x̂_mix), 1) + CE(U(p̂), 2) (three separate BN batches).
    5. L_s = 2 CE(C(x̂), y′); L_nwd = λ_d (‖softmax C(x̂)‖_* − ‖softmax C(x̂_mix)‖_*) / B′
       ('l1': λ_d mean |softmax C(x̂) − softmax C(x̂_mix)|).
    6. Discriminators (``discriminator_loss``): L_D = (1−r) L_U + r (L_s − L_nwd).
       Network and proxies (``forward``):
       L_G = w_p L_proxy(Z′, y′) + γ [r (L_s + L_nwd) − (1−r) L_U].
    7. L_proxy, s_ic = ⟨n(z′_i), n(P_c)⟩, ``proxy_dim`` 0:
         pos_c = log(1 + Σ_{i: y′_i = c} exp(−α⁺(s_ic − δ⁺))), averaged over the classes present
         (official Proxy-Anchor; ``--loss_dadaproxy_per_sample_pos``: over the B′ samples,
         pos_{y′_j}, as the reference), + (1/C) Σ_c log(1 + Σ_{i: y′_i ≠ c} exp(α⁻(s_ic − δ⁻)));
       ``proxy_dim`` 1 (per sample, averaged over B′): log(1 + n_{y′_i} exp(−α⁺(s_{i,y′_i} − δ⁺)))
         + log(1 + Σ_{c ≠ y′_i} exp(α⁻(s_ic − δ⁻))). Z_mix does not enter L_proxy.
    Reproduced: the unbalanced weights (w_p = 0.0075 on L_proxy against 1 − r ≈ 0.99 on −L_U: the
    network maximises an unbounded CE, held by ``d_step`` = 3 discriminator steps a batch), the
    absolute proxy lr 0.04 (Adam group, weight decay 0), ``d_warmup`` epochs of discriminators
    only, discriminators in train mode in both steps. Coefficients come from torch's global RNG
    on the embeddings' device (the reference: numpy). One forward pass feeds the D-steps
    (detached) and the G-step; the reference runs a separate no_grad forward for the D-steps,
    the same values for a network without dropout in train mode. Not implemented: the
    reference's ``mix_extension`` (its domain loss fails on mismatched shapes with it).
    """

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        require_classes(opt, 2, "dadaproxy")
        for name, _, _ in VALUE_FLAGS:
            setattr(self, name, getattr(opt, PREFIX + name))
        self.fd2_bn, self.fc2_bn = opt.loss_dadaproxy_fd2_bn, opt.loss_dadaproxy_fc2_bn
        self.pos_class_mix = opt.loss_dadaproxy_pos_class_mix
        self.normal = opt.loss_dadaproxy_normal
        self.per_sample_pos = opt.loss_dadaproxy_per_sample_pos
        self.check(opt.samples_per_class)
        self.discriminator_steps, self.generator_warmup_epochs = self.d_step, self.d_warmup
        self.proxies = nn.Parameter(torch.randn(opt.n_classes, opt.embed_dim) / 8)
        self.domain = DomainDiscriminator(opt.embed_dim, self.fd_fc1_dim, self.fd2_bn)
        self.category = CategoryDiscriminator(
            opt.embed_dim, (self.fc_fc1_dim, self.fc_fc2_dim), opt.n_classes, self.dropout,
            self.fc2_bn,
        )  # fmt: skip
        shapes = {"individual": (1, opt.embed_dim), "linear": (2 * opt.embed_dim, opt.embed_dim)}
        self.mix_weight = None
        if self.mix_mode in shapes:
            weight = nn.init.xavier_uniform_(torch.empty(shapes[self.mix_mode]), gain=1.414)
            self.mix_weight = nn.Parameter(weight)

    def check(self, samples_per_class: int) -> None:
        """ConfigError for the settings the step contract or the loss cannot serve."""
        if self.pos_class_mix and samples_per_class < 2:
            raise ConfigError(
                f"--loss_dadaproxy_pos_class_mix: --samples_per_class is {samples_per_class}, "
                "expected >= 2 (same-class pairs to mix)"
            )
        if self.g_step != 1:
            raise ConfigError(
                f"--loss_dadaproxy_g_step: found {self.g_step}, expected 1 (the training step "
                "makes one network update per batch)"
            )
        if self.per_sample_pos and self.proxy_dim == 1:
            raise ConfigError(
                "--loss_dadaproxy_per_sample_pos: has no effect with --loss_dadaproxy_proxy_dim "
                "1 (every term is per sample there); expected proxy_dim 0"
            )

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        for name, key, keywords in VALUE_FLAGS:
            metavar = {} if "choices" in keywords else {"metavar": key.upper()}
            flags = f"--{PREFIX}{name}", f"--{key}"
            group.add_argument(*flags, dest=PREFIX + name, **metavar, **keywords)
        for name, text in SWITCHES.items():
            flags = f"--{PREFIX}{name}", f"--{name}"
            group.add_argument(*flags, dest=PREFIX + name, action="store_true", help=text)
        group.add_argument(
            f"--{PREFIX}no_normal",
            "--normal",
            dest=PREFIX + "normal",
            action="store_false",
            help="feed the discriminators unnormalised vectors (the reference's --normal is this "
            "store_false switch; YAML key normal: true/false)",
        )
        group.add_argument(
            f"--{PREFIX}per_sample_pos",
            action="store_true",
            help="reference behaviour: average the positive proxy term over the B′ samples, not "
            "over the proxies with a positive in the batch (proxy_dim 0)",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        """L_G (minimised by the network and the proxies)."""
        z, y, p = self.extended_batch(embeds, labels.to(embeds.device), self.proxies)
        domain, category, discrepancy = self.adversarial_terms(z, y, p, self.mix_weight)
        r = self.d_dis_ratio
        adversarial = r * (category + discrepancy) - (1 - r) * domain
        return self.oproxy_ratio * self.proxy_loss(z, y) + self.dis_gamma * adversarial

    def discriminator_loss(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """L_D on detached embeddings and proxies (the network-side mix weight detached too)."""
        proxies = self.proxies.detach()
        z, y, p = self.extended_batch(embeds.detach(), labels.to(embeds.device), proxies)
        weight = self.mix_weight
        if weight is not None and self.mix_mode == "individual":
            weight = weight.detach()
        domain, category, discrepancy = self.adversarial_terms(z, y, p, weight)
        r = self.d_dis_ratio
        return (1 - r) * domain + r * (category - discrepancy)

    def coefficient(self, like: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
        """m ~ Beta(alpha, beta) from torch's global RNG, a 0-d tensor of ``like``'s dtype and
        device (no argument validation: it would synchronise with the device)."""
        a, b = (torch.tensor(v, dtype=like.dtype, device=like.device) for v in (alpha, beta))
        return torch.distributions.Beta(a, b, validate_args=False).sample()

    def extended_batch(
        self, embeds: torch.Tensor, labels: torch.Tensor, proxies: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Z′ B′×D, y′ B′, P′ B′×D) of item 1."""
        if not self.pos_class_mix:
            return embeds, labels, proxies[labels].to(embeds.dtype)
        anchors, positives = first_positive_pairs(labels)
        m = self.coefficient(embeds, 2.0, 2.0)
        mixed = m * embeds[anchors] + (1 - m) * embeds[positives]
        labels = torch.cat([labels, labels[anchors]])
        return torch.cat([embeds, mixed]), labels, proxies[labels].to(embeds.dtype)

    def mix(self, z: torch.Tensor, p: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        """Z_mix of item 2 (a fresh coefficient per call in the random mode)."""
        if self.mix_mode == "individual":
            return weight * z + (1 - weight) * p
        if self.mix_mode == "linear":
            return torch.cat([z, p], 1) @ weight
        m, s = self.coefficient(z, self.mix_alpha, self.mix_beta), self.shift_scale
        if s < 0:
            return m * (s + 1) * z + (1 - m * (s + 1)) * p
        return (1 - m * s) * z + m * s * p

    def adversarial_terms(
        self, z: torch.Tensor, y: torch.Tensor, p: torch.Tensor, weight: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L_U, L_s, L_nwd) of items 3–5, the domain terms first as in the reference."""
        norm = (lambda v: F.normalize(v, dim=1)) if self.normal else (lambda v: v)
        x, p_hat = norm(z), norm(p)
        domain_inputs = (x, norm(self.mix(z, p, weight)), p_hat)  # domains 0, 1, 2
        domain = sum(cross_entropy_to(self.domain(v), k) for k, v in enumerate(domain_inputs))
        x_mix = norm(self.mix(z, p, weight))
        source, target = self.category(x), self.category(x_mix)
        category = 2.0 * F.cross_entropy(source, y)
        discrepancy = self.d_discrepancy_ratio * DISCREPANCIES[self.dis_mode](source, target)
        return domain, category, discrepancy

    def proxy_loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L_proxy(Z′, y′) of item 7."""
        cos = F.normalize(z, dim=1) @ F.normalize(self.proxies, dim=1).to(z.dtype).T
        is_pos = F.one_hot(y, len(self.proxies)).bool()
        pos_logits = -self.pos_alpha * (cos - self.pos_delta)
        neg_logits = self.neg_alpha * (cos - self.neg_delta)
        if self.proxy_dim == 1:
            count = is_pos.sum(0)[y].to(z.dtype)
            pos = F.softplus(pos_logits.gather(1, y[:, None]).squeeze(1) + count.log())
            return pos.mean() + log1p_sum_exp(neg_logits, ~is_pos, 1).mean()
        pos = log1p_sum_exp(pos_logits, is_pos, 0)
        pos_term = pos[y].mean() if self.per_sample_pos else pos[is_pos.any(0)].mean()
        return pos_term + log1p_sum_exp(neg_logits, ~is_pos, 0).mean()

    def param_groups(self) -> list[dict[str, Any]]:
        groups = [{"params": [self.proxies], "lr": self.proxy_lr, "weight_decay": 0.0}]
        if self.mix_mode == "individual":  # the reference's proxy optimizer, at the D rate
            groups.append(
                {"params": [self.mix_weight], "lr": self.classifier_lr, "weight_decay": 0.0}
            )
        return groups

    def discriminator_groups(self) -> list[dict[str, Any]]:
        decay = self.dis_decay
        groups = [
            {"params": list(module.parameters()), "lr": self.classifier_lr, "weight_decay": decay}
            for module in (self.domain, self.category)
        ]
        if self.mix_mode == "linear":
            groups.append(
                {"params": [self.mix_weight], "lr": self.classifier_lr, "weight_decay": 0.0}
            )
        return groups


def log1p_sum_exp(logits: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """log(1 + Σ_{mask} exp(logits)) along ``dim``, stable for large α (0 where nothing is
    masked in, with a finite gradient)."""
    masked = logits.masked_fill(~mask, float("-inf"))
    zero = torch.zeros_like(masked.narrow(dim, 0, 1))
    return torch.logsumexp(torch.cat([masked, zero], dim), dim)
