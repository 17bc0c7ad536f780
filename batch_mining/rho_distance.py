"""Distance-weighted sampling with ρ-regularisation (reference ``batchminer/rho_distance.py``)."""

from __future__ import annotations

import argparse

import torch

from batch_mining import MINERS
from batch_mining.distance import DistanceMiner, add_cutoff_arguments
from utilities.flag_types import probability


@MINERS.register("rho_distance")
class RhoDistanceMiner(DistanceMiner):
    """Distance-weighted sampling with ρ-regularisation (Roth et al., "Revisiting Training
    Strategies and Generalization Performance in Deep Metric Learning", ICML 2020).

    Mines one (a, p, n) per eligible anchor exactly like ``distance`` (negatives drawn with
    probability ∝ q(d)⁻¹, its own ``--miner_rho_distance_*_cutoff`` flags). Then, independently per
    triplet with probability ρ = ``--miner_rho_distance_cp``, the triplet becomes a push triplet

        (a, p, n)  →  (a, a, p),

    the anchor in the positive slot and its same-class sample p ≠ a in the negative slot, so a
    ranking loss pushes a same-class sample away from the anchor: it counteracts the compression of
    the embedding space (the paper's ρ-regularisation). Returns T×3 indices, one per eligible
    anchor (``triplet_rule = "labels_or_push"``).
    """

    flag_name = "rho_distance"
    triplet_rule = "labels_or_push"

    def __init__(self, opt: argparse.Namespace) -> None:
        super().__init__(opt)
        self.push_probability = float(opt.miner_rho_distance_cp)

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        add_cutoff_arguments(group, "rho_distance")
        group.add_argument(
            "--miner_rho_distance_cp",
            type=probability,
            default=0.2,
            help="probability ρ that a triplet (a, p, n) becomes the push triplet (a, a, p) "
            "(the paper's runs use 0.15 to 0.4)",
        )

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        mined = super().mine(embeds, labels)
        push = torch.rand(len(mined), device=mined.device) < self.push_probability
        pushed = torch.stack([mined[:, 0], mined[:, 0], mined[:, 1]], dim=1)
        return torch.where(push[:, None], pushed, mined)
