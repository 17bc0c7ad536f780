"""What every attack derives from, and the ranking state it reads (robustness.md §2.1–2.3).

An attack perturbs a batch of the split's own images, either as queries (``QA``, ``ES``, ...)
or as candidates (``CA``), and is scored against the *candidate set*: the clean embeddings of
the gallery (the whole split unless the dataset has query/gallery masks). Per batch the runner
calls ``select`` (targets, from a seeded generator), ``measure`` on the clean embeddings (benign
summary), the PGD engine on ``objective`` (minimised), and ``measure`` again on the adversarial
embeddings. ``measure`` returns one value per attacked item, so summaries are exact means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from attacks.spec import AttackSpec

METRICS = ("N", "E", "C")
MASKED = 1e38


def embedding_form(embeds: torch.Tensor, metric: str) -> torch.Tensor:
    """Embeddings as the metric compares them: unit length for N (normalised Euclidean) and C
    (cosine), raw for E (Euclidean)."""
    return embeds if metric == "E" else F.normalize(embeds, dim=-1)


def pairwise_distance(
    a: torch.Tensor, b: torch.Tensor, metric: str, exact: bool = True
) -> torch.Tensor:
    """d(a_i, b_j), (..., n, m): 1 − ⟨a,b⟩ for C (unit inputs), Euclidean for N and E.

    ``exact``: computed from differences, not through a matrix product, so equal inputs give
    bit-equal distances (ranks compare distances strictly); objectives use the faster product.
    """
    if metric == "C":
        return 1.0 - a @ b.transpose(-1, -2)
    mode = "donot_use_mm_for_euclid_dist" if exact else "use_mm_for_euclid_dist_if_necessary"
    return torch.cdist(a, b, compute_mode=mode)


def paired_distance(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    """d(a_i, b_i) row by row, (..., n), with the same arithmetic as ``pairwise_distance``."""
    return pairwise_distance(a.unsqueeze(-2), b.unsqueeze(-2), metric).squeeze(-1).squeeze(-1)


@dataclass
class CandidateSet:
    """The clean split an attack is scored against.

    ``embeds`` N×D (in the metric's form) and ``labels`` (N,) cover the whole split;
    ``query_index`` / ``gallery_index`` index the queries and the ranked candidates.
    ``dataset_name`` selects SPQA's ξ rate.
    """

    embeds: torch.Tensor
    labels: torch.Tensor
    query_index: torch.Tensor
    gallery_index: torch.Tensor
    metric: str = "N"
    dataset_name: str | None = None

    def __post_init__(self) -> None:
        n = self.labels.numel()
        self.gallery = self.embeds[self.gallery_index]
        self.gallery_labels = self.labels[self.gallery_index]
        self.queries = self.embeds[self.query_index]
        self.gallery_position = _positions(self.gallery_index, n)
        self.query_position = _positions(self.query_index, n)

    def batch(self, images: torch.Tensor, index: torch.Tensor) -> Batch:
        """The attacked batch: images B×C×H×W of split items ``index`` (B,)."""
        return Batch(
            images=images,
            index=index,
            clean=self.embeds[index],
            labels=self.labels[index],
            self_position=self.gallery_position[index],
            query_position=self.query_position[index],
        )

    def distances(self, embeds: torch.Tensor, exact: bool = True) -> torch.Tensor:
        """B×Ng distances of ``embeds`` (B×D) to every candidate."""
        return pairwise_distance(embeds, self.gallery, self.metric, exact)


@dataclass
class Batch:
    """One attacked batch: ``clean`` B×D clean embeddings, ``labels`` (B,), ``self_position``
    (B,) each item's position among the candidates (−1 when it is not one), ``query_position``
    its position among the queries (−1 when it is not one)."""

    images: torch.Tensor
    index: torch.Tensor
    clean: torch.Tensor
    labels: torch.Tensor
    self_position: torch.Tensor
    query_position: torch.Tensor


def _positions(index: torch.Tensor, n: int) -> torch.Tensor:
    position = torch.full((n,), -1, dtype=torch.long, device=index.device)
    position[index] = torch.arange(index.numel(), device=index.device)
    return position


def mask_columns(distances: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """``distances`` (B×N) with column ``position[i]`` of row i set to 1e38 (skipped if −1)."""
    masked = distances.clone()
    rows = (position >= 0).nonzero().squeeze(1)
    masked[rows, position[rows]] = MASKED
    return masked


def top_k_pool(distances: torch.Tensor, exclude: torch.Tensor, size: int) -> torch.Tensor:
    """B×size indices of each row's nearest columns, nearest first, column ``exclude`` skipped."""
    return mask_columns(distances, exclude).topk(size, dim=1, largest=False).indices


def neighbourhood_size(n: int, needed: int) -> int:
    """robrank's "top-1%" target pool, ⌊0.01·n⌋, at least ``needed`` so small splits work."""
    return min(max(n // 100, needed, 1), max(n - 1, 1))


def random_rows(pool: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` entries of each row of ``pool`` (B×k) in a uniformly random order, without
    replacement (the first ``count`` of a random permutation per row)."""
    keys = torch.rand(pool.shape, generator=generator).to(pool.device)
    order = keys.argsort(dim=1)[:, :count]
    return pool.gather(1, order)


def uniform_indices(shape: tuple[int, ...], high: int, generator: torch.Generator,
                    device: torch.device) -> torch.Tensor:  # fmt: skip
    """Uniform random integers in [0, high) of ``shape``, drawn on the CPU generator (so the
    same seed gives the same targets on every device)."""
    return torch.randint(high, shape, generator=generator).to(device)


class Attack:
    """An adversarial ranking attack; subclasses register with ``@ATTACKS.register("TYPE")``.

    ``perturbs`` is "query" or "candidate"; ``keys`` the type-specific attack-string keys and
    ``required`` those that must be given. ``compat`` reproduces robrank's quirks
    (``--attack_compat robrank``).
    """

    perturbs: ClassVar[str] = "query"
    keys: ClassVar[tuple[str, ...]] = ()
    required: ClassVar[tuple[str, ...]] = ()
    registry_key: ClassVar[str]

    def __init__(self, spec: AttackSpec, compat: bool = False) -> None:
        self.spec = spec
        self.compat = compat

    @property
    def name(self) -> str:
        """``CA+``, ``QA-``, ``ES``: the prefix of the reported keys."""
        return f"{self.spec.type}{self.spec.sign}"

    def select(self, batch: Batch, cands: CandidateSet, generator: torch.Generator) -> dict:
        """The targets of each item of the batch (tensors on the batch's device)."""
        return {}

    def objective(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> torch.Tensor:
        """Scalar minimised by PGD, from the perturbed items' embeddings B×D."""
        raise NotImplementedError

    def measure(
        self, embeds: torch.Tensor, batch: Batch, cands: CandidateSet, targets: dict
    ) -> dict[str, torch.Tensor]:
        """Reported values, each (B,) per item, for the embeddings B×D of the batch."""
        raise NotImplementedError

    def measure_adversarial(
        self,
        embeds: torch.Tensor,
        penultimate: torch.Tensor | None,
        batch: Batch,
        cands: CandidateSet,
        targets: dict,
    ) -> dict[str, torch.Tensor]:
        """The adversarial summary; ``penultimate`` (the last iterate before the final PGD
        step) is given only when ``wants_penultimate`` is true."""
        return self.measure(embeds, batch, cands, targets)

    @property
    def wants_penultimate(self) -> bool:
        return False


def label_hit(
    distances: torch.Tensor, self_position: torch.Tensor, labels: torch.Tensor,
    gallery_labels: torch.Tensor, k: int = 1,
) -> torch.Tensor:  # fmt: skip
    """(B,) 1.0 where one of the k nearest candidates (own clean copy masked) has the label."""
    k = min(k, distances.shape[1])
    nearest = mask_columns(distances, self_position).topk(k, dim=1, largest=False).indices
    return (gallery_labels[nearest] == labels[:, None]).any(dim=1).double()
