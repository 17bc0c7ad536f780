"""SPQA± (semantics-preserving query attack), Zhou et al., "Adversarial Ranking Attack and
Defense", ECCV 2020; ξ rule of robrank (robustness.md §2.3)."""

from __future__ import annotations

import math

import torch

from attacks import ATTACKS
from attacks.base import Attack, Batch, CandidateSet, top_k_pool
from attacks.qa import query_targets, ranking_loss, relative_rank
from utilities.errors import ConfigError

SEMANTIC_ANCHORS = 5
# robrank's rate k per dataset (mnist, fashion, cub, cars, sop); ours adds digits (28-px digits,
# as mnist) and inshop (product photos, as sop).
XI_RATE = {
    "mnist": 2e4,
    "digits": 2e4,
    "fashion": 4e4,
    "cub200": 4e4,
    "cars196": 7e4,
    "online_products": 7e4,
    "inshop": 7e4,
}


def xi_weight(semantic_loss: float, rate: float) -> float:
    """ξ = min(exp(k·L_SP), 1e9), 1e7 where that is not finite (robrank's rule)."""
    try:
        value = math.exp(rate * semantic_loss)
    except OverflowError:
        value = math.inf
    return 1e7 if not math.isfinite(value) else min(value, 1e9)


@ATTACKS.register("SPQA")
class SemanticQueryAttack(Attack):
    """SPQA± (Zhou et al., ECCV 2020): QA± that keeps the query's semantics.

    G = 5 semantic anchors: for +, q's 5 nearest candidates (its clean copy excluded); for −,
    the 5 nearest of q's ⌊1%⌋ neighbours that are not QA− targets. PGD minimises
        L_QA±(q; C) + ξ·L_QA+(q; G),   ξ = min(exp(k·L_QA+(q; G)), 1e9), not differentiated,
    with the rate k of the dataset (2e4 mnist/digits, 4e4 fashion/cub, 7e4 cars/sop/inshop).
    Reported ``SPQA±:prank`` (as QA) and ``SPQA±:GTprank`` (the same for G; should stay small).
    """

    keys = ("pm", "M")
    required = ("pm", "M")

    def select(self, batch: Batch, cands: CandidateSet, generator: torch.Generator) -> dict:
        if cands.dataset_name not in XI_RATE:
            raise ConfigError(
                f"--attack: SPQA has no ξ rate for dataset {cands.dataset_name!r}; expected one "
                f"of {', '.join(XI_RATE)}"
            )
        count = self.spec.M
        chosen = query_targets(batch, cands, self.spec.pm, count, generator, SEMANTIC_ANCHORS)
        if self.spec.pm == "+":
            anchors = top_k_pool(
                cands.distances(batch.clean), batch.self_position, SEMANTIC_ANCHORS
            )
        else:
            rest = chosen[:, count:]
            # the nearest non-targets: rest sorted by benign distance
            order = cands.distances(batch.clean).gather(1, rest).argsort(dim=1)
            anchors = rest.gather(1, order[:, :SEMANTIC_ANCHORS])
        return {
            "chosen": chosen[:, :count],
            "anchors": anchors,
            "rate": XI_RATE[cands.dataset_name],
        }

    def objective(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> torch.Tensor:
        distances = cands.distances(embeds, exact=False)
        attack = ranking_loss(distances, targets["chosen"], self.spec.pm)
        semantic = ranking_loss(distances, targets["anchors"], "+")
        xi = xi_weight(semantic.item(), targets["rate"])
        return attack + xi * semantic

    def measure(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> dict[str, torch.Tensor]:
        distances = cands.distances(embeds)
        return {
            f"{self.name}:prank": relative_rank(distances, targets["chosen"]),
            f"{self.name}:GTprank": relative_rank(distances, targets["anchors"]),
        }
