"""The batch-miner interface and the vectorised helpers every miner shares.

A miner turns one batch of embeddings and labels into the indices a loss is computed on. It
declares the kind of its result in ``output``; a loss lists the kinds it can consume, so new
result kinds (e.g. npair/lifted's anchor, positive-set, negative-set tuples) extend the registry
without touching the existing losses. Mining runs on detached embeddings; every random choice goes
through the torch generator of the embeddings' device, so a global seed makes it deterministic.
"""

from __future__ import annotations

import argparse

import torch


class BatchMiner:
    """Base class: ``miner(embeds B×D, labels B) -> LongTensor T×3`` of (anchor, positive,
    negative) batch indices on the embeddings' device.

    Subclasses implement :meth:`mine` and may override ``output`` when they return something other
    than triplets. A triplet miner states which rule its triplets obey in ``triplet_rule``:

    - ``"labels"``: y_a = y_p, a ≠ p and y_n ≠ y_a (every ordinary miner);
    - ``"labels_or_push"``: as ``"labels"``, except ρ-regularisation triplets (a, a, p′) whose
      "negative" p′ ≠ a is a same-class sample, so a ranking loss pushes it away (``rho_distance``);
    - ``"shuffled_labels"``: ``"labels"`` for a random permutation of the batch labels, not the true
      ones (the ``random_distance`` control);
    - ``"one_class"``: a, p and n drawn with replacement from one class (the ``intra_random``
      control).
    """

    output = "triplets"
    triplet_rule = "labels"
    registry_key: str

    def __init__(self, opt: argparse.Namespace) -> None:
        del opt

    def __call__(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.mine(embeds.detach(), labels.to(embeds.device))

    def mine(self, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def pairwise_distances(embeds: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix B×B (exactly 0 on the diagonal), in float32 or better."""
    x = embeds.float() if embeds.dtype in (torch.float16, torch.bfloat16) else embeds
    squared = x.pow(2).sum(1)
    gram = x @ x.T
    dist2 = (squared[:, None] + squared[None, :] - 2 * gram).clamp_min(0)
    dist2.fill_diagonal_(0)
    return dist2.sqrt()


def class_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean B×B masks: ``positives[a, p]`` same class, a≠p; ``negatives[a, n]`` other class."""
    same = labels[:, None] == labels[None, :]
    return same.clone().fill_diagonal_(False), ~same


def random_choice(mask: torch.Tensor) -> torch.Tensor:
    """One column per row, uniform among the row's True entries (rows without any: arbitrary)."""
    scores = torch.rand(mask.shape, device=mask.device)
    return scores.masked_fill(~mask, -1.0).argmax(1)


def fallback(preferred: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Per row: the preferred mask where it has an entry, else the allowed mask."""
    return torch.where(preferred.any(1, keepdim=True), preferred, allowed)


def triplets(
    anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
) -> torch.Tensor:
    """Stack three index vectors into the T×3 int64 triplet tensor."""
    return torch.stack([anchors, positives, negatives], dim=1).long()


# Result kind "anchor_positive_negative_sets" (miners ``npair`` and ``lifted``; losses ``npair``,
# ``angular`` and ``lifted``): one LongTensor A×(1+B) on the embeddings' device, a row per anchor.
#   column 0       the anchor's batch index a;
#   column 1 + j   the role of batch sample j for that anchor: POSITIVE (1), NEGATIVE (-1) or 0
#                  (unused: the anchor itself, or a sample the miner left out).
# One tensor (not a tuple of ragged lists) keeps every consumer vectorised: a loss reads the sets
# as A×B boolean masks (``split_anchor_sets``) and masks its A×B similarity or distance matrix.
# Every row has at least one positive and one negative: npair rows exactly one positive, lifted
# rows every same-class sample. A = 0 (nothing to mine) gives an empty 0×(1+B) tensor.
POSITIVE = 1
NEGATIVE = -1


def anchor_sets(
    anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
) -> torch.Tensor:
    """Pack anchor indices (A,) and boolean A×B positive/negative masks into the A×(1+B)
    ``anchor_positive_negative_sets`` tensor (a sample in both masks counts as positive)."""
    roles = torch.where(positives, POSITIVE, torch.where(negatives, NEGATIVE, 0))
    return torch.cat([anchors[:, None], roles], dim=1).long()


def split_anchor_sets(mined: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unpack an A×(1+B) ``anchor_positive_negative_sets`` tensor into anchor indices (A,) and
    boolean A×B masks of each anchor's positives and negatives."""
    roles = mined[:, 1:]
    return mined[:, 0], roles == POSITIVE, roles == NEGATIVE
