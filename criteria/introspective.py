"""The introspective similarity metric (ISM) of IDML, applied by the similarity-based losses
(no component is registered here: the formula, its flags and the start-up check).

Wang, Zheng, Zhu, Zhou & Lu, "Introspective Deep Metric Learning", TPAMI 2023 (arXiv 2309.09982;
official code ``wzzheng/IDML``, spec methods.md §A.2–§A.3). Besides the semantic embedding x the
model outputs an uncertainty embedding u (``outputs["uncertainty"]``, B×E, with ``--idml``); a
similarity s between two items becomes

    s_I = 1 − (1 − s)·exp(−(d_u + c) / (λ·d_s))

with d_s the squared semantic distance and d_u the squared distance of the uncertainties
(c = ``--loss_idml_c``, λ = ``--loss_idml_lambda``). exp(·) ∈ (0, 1], so s_I ≥ s: a larger
uncertainty distance, or a smaller semantic distance, pushes s_I towards 1 ("allows confusion"
for positives, pushes negatives harder); s_I → s when λ·d_s is large against d_u + c, and
s_I → 1 as d_s → 0.

Two forms:

- proxy form (the reference's Proxy-Anchor; also ProxyNCA), sample i against proxy p_c:
  s = cos(x̂_i, p_c/‖p_c‖), d_s = ‖x̂_i − p_c‖² with the RAW proxy p_c (x̂ = x/‖x‖, the
  reference's unit-norm model output), d_u = ‖û_i‖² (a proxy's uncertainty is 0);
- pair form (inferred in the spec, not in the released code), samples i and j:
  d_s = ‖x_i − x_j‖², d_u = ‖û_i − û_j‖². For a loss on the squared distance d² between unit
  vectors (1 − s = d²/2) this is the introspective squared distance

      d_I² = d²·exp(−(d_u + c) / (λ·d²))       (d_I = sqrt(d_I² + 1e-8) on the distance)

  which the losses use on their own distance (raw embeddings for triplet ``squared`` and
  ``euclidean``, contrastive and margin; normalised ones for cosines).

û = u by default, so d_u varies and the uncertainty head learns.
``--loss_idml_normalize_uncertainty`` reproduces the reference, û = u/‖u‖: then d_u ≡ 1 for every
proxy, a constant, and the head gets no gradient from a proxy loss (the reference's PA recipe
trains s_I = 1 − (1 − s)·exp(−(1 + c)/(λ·d_s))); pair distances d_u = ‖û_i − û_j‖² still vary.

Numerics: d_s is clamped to ``DISTANCE_EPS`` (it is 0 for x_i = x_j, e.g. on the diagonal of a
pair matrix, or x = p), where the factor is exp(−(d_u + c)/(λ·eps)) ≈ 0 for c > 0 (the limit
d_s → 0), and 1 when d_u + c = 0; no gradient flows through the clamped d_s and none is NaN
(for λ and d_u + c of sane size: the backward divides by (λ·eps)²).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from criteria import CRITERIA
from criteria.base import distances
from utilities.errors import ConfigError
from utilities.flag_types import nonnegative_float, positive_float

DISTANCE_EPS = 1e-12  # smallest squared semantic distance d_s the factor divides by
REFERENCE_C = 4.0
REFERENCE_LAMBDA = 5.0


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """The ISM flags (read by every loss with ``introspective = True`` under ``--idml``)."""
    group.add_argument(
        "--loss_idml_c",
        type=nonnegative_float,
        default=REFERENCE_C,
        help="c of the introspective similarity s_I = 1 − (1 − s)·exp(−(d_u + c)/(λ·d_s)) "
        "(IDML's DML code: 4; its classification code: 0)",
    )
    group.add_argument(
        "--loss_idml_lambda",
        type=positive_float,
        default=REFERENCE_LAMBDA,
        help="λ of the introspective similarity (IDML: 5)",
    )
    group.add_argument(
        "--loss_idml_normalize_uncertainty",
        action="store_true",
        help="reproduce the IDML reference: L2-normalise the uncertainty before d_u, so d_u ≡ 1 "
        "against proxies and the uncertainty head gets no gradient from a proxy loss",
    )


def introspective_losses() -> list[str]:
    """The ``--loss`` keys with an ISM form (``introspective = True``)."""
    return [key for key, loss in CRITERIA.items() if getattr(loss, "introspective", False)]


def check_options(opt: argparse.Namespace) -> None:
    """ConfigError when ``--idml`` is given with a loss that has no ISM form."""
    if not getattr(opt, "idml", False):
        return
    if getattr(CRITERIA.get(opt.loss), "introspective", False):
        return
    raise ConfigError(
        f"--loss: --idml needs a loss with an introspective similarity, got --loss {opt.loss}; "
        f"losses that support it: {', '.join(introspective_losses())}"
    )


def introspection_factor(
    d_s: torch.Tensor, d_u: torch.Tensor, c: float, lam: float
) -> torch.Tensor:
    """exp(−(d_u + c) / (λ·max(d_s, eps))), elementwise (broadcast), in (0, 1]."""
    return torch.exp(-(d_u + c) / (lam * d_s.clamp_min(DISTANCE_EPS)))


def introspective_similarity(
    s: torch.Tensor, d_s: torch.Tensor, d_u: torch.Tensor, c: float, lam: float
) -> torch.Tensor:
    """s_I = 1 − (1 − s)·exp(−(d_u + c)/(λ·d_s)), elementwise (broadcast)."""
    return 1 - (1 - s) * introspection_factor(d_s, d_u, c, lam)


def introspective_squared_distance(
    d2: torch.Tensor, d_u: torch.Tensor, c: float, lam: float
) -> torch.Tensor:
    """d_I² = d²·exp(−(d_u + c)/(λ·d²)), elementwise: the pair form on a squared distance."""
    return d2 * introspection_factor(d2, d_u, c, lam)


@dataclass(frozen=True)
class Introspection:
    """The ISM of the ``--loss_idml_*`` flags, in the forms the losses need."""

    c: float = REFERENCE_C
    lam: float = REFERENCE_LAMBDA
    normalize_uncertainty: bool = False

    @classmethod
    def from_options(cls, opt: argparse.Namespace) -> Introspection:
        return cls(
            float(opt.loss_idml_c),
            float(opt.loss_idml_lambda),
            bool(opt.loss_idml_normalize_uncertainty),
        )

    def uncertainty(self, uncertainty: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """û (B×E): the uncertainty as ``like``'s dtype, L2-normalised with the reference flag."""
        u = uncertainty.to(like.dtype)
        return F.normalize(u, dim=1) if self.normalize_uncertainty else u

    def proxy_similarities(
        self, embeds: torch.Tensor, proxies: torch.Tensor, uncertainty: torch.Tensor
    ) -> torch.Tensor:
        """Proxy form, B×C: s_I(i,c) with s = cos(x_i, p_c), d_s = ‖x̂_i − p_c‖² (raw proxy,
        x̂ = x/‖x‖) and d_u = ‖û_i‖²; ``embeds`` B×D, ``proxies`` C×D (raw), ``uncertainty``
        B×E."""
        x = F.normalize(embeds, dim=1)
        p = proxies.to(embeds.dtype)
        inner = x @ p.T
        cosines = inner / p.norm(dim=1).clamp_min(1e-12)
        d_s = (x.pow(2).sum(1, keepdim=True) + p.pow(2).sum(1) - 2 * inner).clamp_min(0)
        d_u = self.uncertainty(uncertainty, embeds).pow(2).sum(1, keepdim=True)
        return introspective_similarity(cosines, d_s, d_u, self.c, self.lam)

    def pair_squared_distances(
        self, d2: torch.Tensor, u_x: torch.Tensor, u_y: torch.Tensor
    ) -> torch.Tensor:
        """Pair form, row-wise: d_I² of the squared distances ``d2`` (T,) of T pairs whose
        uncertainties are the rows of ``u_x``, ``u_y`` (T×E)."""
        d_u = (self.uncertainty(u_x, d2) - self.uncertainty(u_y, d2)).pow(2).sum(1)
        return introspective_squared_distance(d2, d_u, self.c, self.lam)

    def pair_distances(
        self, x: torch.Tensor, y: torch.Tensor, u_x: torch.Tensor, u_y: torch.Tensor
    ) -> torch.Tensor:
        """Pair form on the Euclidean distance, row-wise: d_I = sqrt(d²·exp(−(d_u + c)/(λ·d²))
        + 1e-8), d² = ‖x − y‖² (the ``+ 1e-8`` of ``criteria.base.distances``)."""
        d2 = (x - y).pow(2).sum(1)
        return (self.pair_squared_distances(d2, u_x, u_y) + 1e-8).sqrt()

    def triplet_distances(
        self, embeds: torch.Tensor, mined: torch.Tensor, uncertainty: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(d(a,p), d(a,n)) of the T mined triplets (T×3 indices into ``embeds`` B×D), with
        d = sqrt(‖·‖² + 1e-8); the introspective d_I when ``uncertainty`` (B×E) is given."""
        anchor, positive, negative = (embeds[index] for index in mined.T)
        if uncertainty is None:
            return distances(anchor, positive), distances(anchor, negative)
        u_a, u_p, u_n = (uncertainty[index] for index in mined.T)
        d_ap = self.pair_distances(anchor, positive, u_a, u_p)
        return d_ap, self.pair_distances(anchor, negative, u_a, u_n)

    def similarity_matrix(self, sim: torch.Tensor, uncertainty: torch.Tensor) -> torch.Tensor:
        """Pair form on a cosine matrix S (B×B, of unit vectors): S_I with d_s = 2 − 2·S_ij and
        d_u = ‖û_i − û_j‖². On the diagonal (d_s = 0) S_I = 1 with zero gradient."""
        u = self.uncertainty(uncertainty, sim)
        squared = u.pow(2).sum(1)
        d_u = (squared[:, None] + squared[None, :] - 2 * u @ u.T).clamp_min(0)
        d_s = (2 - 2 * sim).clamp_min(0)
        return introspective_similarity(sim, d_s, d_u, self.c, self.lam)
