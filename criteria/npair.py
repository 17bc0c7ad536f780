"""N-pair loss (reference ``criteria/npair.py``)."""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F

from batch_mining.base import BatchMiner, split_anchor_sets
from criteria import CRITERIA
from criteria.base import Criterion, zero_loss
from utilities.flag_types import nonnegative_float


def tuplets(mined: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One (N+1)-tuplet per (anchor, positive) pair of an ``anchor_positive_negative_sets``
    tensor: anchor indices (K,), positive indices (K,) and the K×B boolean negative masks."""
    anchors, positives, negatives = split_anchor_sets(mined)
    row, positive = positives.nonzero(as_tuple=True)
    return anchors[row], positive, negatives[row]


def tuplet_loss(
    logits: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor
) -> torch.Tensor:
    """mean_k log(1 + Σ_{n ∈ N_k} exp f_k(n)) for K×B logits f and K×B negative masks N_k.

    The positive's column (never a negative) is set to 0 and every other non-negative to −inf,
    so this is the cross entropy with the positive as target: exact, no overflow."""
    logits = logits.masked_fill(~negatives, float("-inf"))
    logits = logits.scatter(1, positive[:, None], 0.0)
    return F.cross_entropy(logits, positive)


def npair_term(
    sims: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    limit: float | None = None,
) -> torch.Tensor:
    """mean_k log(1 + Σ_{n ∈ N_k} exp(x_aᵀx_n − x_aᵀx_p)) over the tuplets (a_k, p_k, N_k), from
    their K×B inner products ``sims`` (row k: x_{a_k}ᵀx_j); logits clamped to ±``limit`` if
    given."""
    logits = sims - sims.gather(1, positive[:, None])
    if limit is not None:
        logits = logits.clamp(-limit, limit)
    return tuplet_loss(logits, positive, negatives)


@CRITERIA.register("npair")
class NPairLoss(Criterion):
    """N-pair loss (Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective",
    NeurIPS 2016) on mined (N+1)-tuplets: anchor a, positive p, negative set N_a, on unnormalised
    embeddings (divided by 4 first with a BN-Inception ``--arch``, as in the reference):

        L = mean_{(a,p)} log(1 + Σ_{n ∈ N_a} exp(x_aᵀx_n − x_aᵀx_p)) + λ_l2 · mean_i ‖x_i‖

    (mean over the mined (a,p) pairs, i.e. over anchors with the ``npair`` miner; a miner with
    positive sets contributes one term per pair; the ‖x‖ penalty is over the whole batch, as in
    the reference). 0 when nothing is mined.
    """

    requires_batchminer = True
    miner_outputs = ("anchor_positive_negative_sets",)

    def __init__(self, opt: argparse.Namespace, miner: BatchMiner | None = None) -> None:
        super().__init__(opt, miner)
        self.l2_weight = opt.loss_npair_l2
        self.embed_scale = 0.25 if "bninception" in opt.arch else 1.0

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--loss_npair_l2",
            type=nonnegative_float,
            default=0.005,
            help="weight λ_l2 of the embedding-norm penalty λ_l2·mean ‖x‖ (the paper's 0.02 "
            "scaled by 0.25 as in its implementation)",
        )

    def forward(self, embeds: torch.Tensor, labels: torch.Tensor, **context: Any) -> torch.Tensor:
        mined = self.tuples(embeds, labels, context.get("mined"))
        if len(mined) == 0:
            return zero_loss(embeds)
        if self.embed_scale != 1.0:
            embeds = embeds * self.embed_scale
        anchor, positive, negatives = tuplets(mined)
        # log(1 + Σ_n exp(s_an − s_ap)) = CE over {s_ap} ∪ {s_an} with the positive as target: the
        # similarities need no shift by s_ap (fewer ops than npair_term, same value).
        in_tuplet = negatives.scatter(1, positive[:, None], True)
        sims = (embeds[anchor] @ embeds.T).masked_fill(~in_tuplet, float("-inf"))
        loss = F.cross_entropy(sims, positive)
        return loss + self.l2_weight * embeds.norm(dim=1).mean()
