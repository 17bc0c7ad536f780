"""DADA's two discriminators, its discrepancies and its same-class pair selection (helpers of
``criteria/dadaproxy.py``; no component registered here).

Reference: ``Noahsark/DADA``, ``criteria/dadaproxy.py`` (``Uni_Predictor``, ``Dis_Predictor``,
``discrepancy``, ``get_pos_pairs``); methods.md §B.1 items 1, 4 and 5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

N_DOMAINS = 3  # 0 = samples, 1 = sample→proxy mixes, 2 = proxies


class DomainDiscriminator(nn.Sequential):
    """U: which of the three domains an input D-vector comes from (B×D → B×3 logits).

    Linear(D, hidden) → BN → ReLU → Linear(hidden, 3) [→ BN(3) with ``final_bn``]. The
    reference also declares a dropout here that its forward never uses; it is left out.
    """

    def __init__(self, embed_dim: int, hidden: int, final_bn: bool) -> None:
        layers = [nn.Linear(embed_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
        layers.append(nn.Linear(hidden, N_DOMAINS))
        if final_bn:
            layers.append(nn.BatchNorm1d(N_DOMAINS))
        super().__init__(*layers)


class CategoryDiscriminator(nn.Sequential):
    """C: the class of an input D-vector (B×D → B×n_classes logits).

    Linear(D, h1) → BN → ReLU → Dropout → Linear(h1, h2) → BN → ReLU → Dropout →
    Linear(h2, n_classes) [→ BN(n_classes) with ``final_bn``].
    """

    def __init__(
        self,
        embed_dim: int,
        hidden: tuple[int, int],
        n_classes: int,
        dropout: float,
        final_bn: bool,
    ) -> None:
        layers: list[nn.Module] = []
        width = embed_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, n_classes))
        if final_bn:
            layers.append(nn.BatchNorm1d(n_classes))
        super().__init__(*layers)


def nuclear_discrepancy(source: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
    """The nuclear-norm Wasserstein discrepancy of DALN ('nwd'), B×C logits each:
    (‖softmax(source)‖_* − ‖softmax(mixed)‖_*) / B."""
    norms = torch.linalg.matrix_norm(torch.stack([source.softmax(1), mixed.softmax(1)]), "nuc")
    return (norms[0] - norms[1]) / len(source)


def l1_discrepancy(source: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
    """'l1': mean |softmax(source) − softmax(mixed)| over the B×C entries."""
    return (source.softmax(1) - mixed.softmax(1)).abs().mean()


DISCREPANCIES = {"nwd": nuclear_discrepancy, "l1": l1_discrepancy}


def first_positive_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each label with two or more samples, in ascending label order, the first ordered
    positive pair (a, p): a its lowest batch index, p its second lowest (the reference takes the
    first pair per label of all (a, p), a ≠ p, in row-major order). Returns two index tensors."""
    order = torch.sort(labels, stable=True).indices
    ranked = labels[order]
    starts = torch.ones_like(ranked, dtype=torch.bool)
    starts[1:] = ranked[1:] != ranked[:-1]
    first = starts.nonzero().squeeze(1)
    first = first[first + 1 < len(ranked)]
    first = first[ranked[first + 1] == ranked[first]]
    return order[first], order[first + 1]


def cross_entropy_to(logits: torch.Tensor, target: int) -> torch.Tensor:
    """Batch-mean cross-entropy of B×K logits against the one class ``target`` for every row."""
    targets = torch.full((len(logits),), target, dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, targets)
