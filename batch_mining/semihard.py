"""Semi-hard negative mining (reference ``batchminer/semihard.py``)."""

from __future__ import annotations

import argparse

import torch

from batch_mining import MINERS
from batch_mining.base import (
    BatchMiner,
    class_masks,
    fallback,
    pairwise_distances,
    random_choice,
    triplets,
)
from utilities.flag_types import nonnegative_float

DEFAULT_MARGIN = 0.2


@MINERS.register("semihard")
class SemihardMiner(BatchMiner):
    """Semi-hard negatives (Schroff et al., "FaceNet", CVPR 2015).

    For every anchor with a positive and a negative: a random positive p, and a negative drawn
    uniformly among d(a,p) < d(a,n) < d(a,p) + m; a random negative when none is semi-hard.
    m is ``--miner_semihard_margin`` if given, else the loss's ``--loss_<loss>_margin`` if that
    flag exists, else 0.2. Returns T×3 indices, one triplet per eligible anchor.
    """

    def __init__(self, opt: argparse.Namespace) -> None:
        super().__init__(opt)
        self.margin = resolve_margin(opt)

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--miner_semihard_margin",
            type=nonnegative_float,
            default=None,
            help="semi-hard window m: d(a,p) < d(a,n) < d(a,p) + m (default: the loss's "
            f"--loss_<loss>_margin if it has one, else {DEFAULT_MARGIN})",
        )

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        dist = pairwise_distances(embeds)
        positives, negatives = class_masks(labels)
        anchors = (positives.any(1) & negatives.any(1)).nonzero().squeeze(1)
        positive = random_choice(positives[anchors])
        d_ap = dist[anchors, positive][:, None]
        d_an = dist[anchors]
        window = negatives[anchors] & (d_an > d_ap) & (d_an < d_ap + self.margin)
        negative = random_choice(fallback(window, negatives[anchors]))
        return triplets(anchors, positive, negative)


def resolve_margin(opt: argparse.Namespace) -> float:
    """``--miner_semihard_margin``, else ``--loss_<loss>_margin``, else the default."""
    explicit = getattr(opt, "miner_semihard_margin", None)
    if explicit is not None:
        return float(explicit)
    loss_margin = getattr(opt, f"loss_{getattr(opt, 'loss', '')}_margin", None)
    return DEFAULT_MARGIN if loss_margin is None else float(loss_margin)
