"""Intra- and inter-class cosine distances (``dists@intra``, ``dists@inter``,
``dists@intra_over_inter``)."""

from __future__ import annotations

import torch

from metrics import METRICS
from metrics.base import EvalInputs, Metric

MODES = ("intra", "inter", "intra_over_inter")


def class_sums(vectors: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C×D sums of the rows of each class, (C,) class sizes), classes in sorted label order."""
    _, classes, sizes = torch.unique(labels, return_inverse=True, return_counts=True)
    sums = vectors.new_zeros(sizes.numel(), vectors.shape[1]).index_add_(0, classes, vectors)
    return sums, sizes


def mean_intra_distance(embeddings: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over classes of the mean pairwise cosine distance within the class.

    With û the L2-normalised rows and s_c = Σ_{i∈c} û_i, the n_c² − n_c ordered pairs of class c
    have Σ_{i≠j} (1 − û_i·û_j) = n_c² − ‖s_c‖², so no pair is ever formed. A singleton class
    takes the largest mean of the other classes (the reference's intent); NaN if all are.
    """
    unit = torch.nn.functional.normalize(embeddings.double(), dim=1)
    sums, sizes = class_sums(unit, labels)
    sizes = sizes.double()
    defined = sizes > 1
    if not bool(defined.any()):
        return float("nan")
    per_class = (sizes.square() - sums.square().sum(1)) / (sizes.square() - sizes).clamp(min=1)
    per_class = torch.where(defined, per_class, per_class[defined].max())
    return per_class.mean().item()


def mean_inter_distance(embeddings: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean cosine distance between the L2-normalised class means over the C² − C ordered pairs.

    With v_c the normalised class means: Σ_{c≠c'} (1 − v_c·v_c') = C² − ‖Σ_c v_c‖²; NaN for C < 2.
    """
    sums, sizes = class_sums(embeddings.double(), labels)
    count = float(sizes.numel())
    if count < 2:
        return float("nan")
    centres = torch.nn.functional.normalize(sums / sizes[:, None], dim=1)
    return ((count**2 - centres.sum(0).square().sum()) / (count**2 - count)).item()


@METRICS.register("dists")
class ClassDistances(Metric):
    """Intra-/inter-class cosine distances (Roth et al., "Revisiting Training Strategies and
    Generalization Performance in Deep Metric Learning", ICML 2020, §4; spec §7.2).

        intra = mean_c  (1/(n_c² − n_c)) Σ_{i≠j ∈ c} (1 − cos(x_i, x_j))
        inter = (1/(C² − C)) Σ_{c≠c'} (1 − cos(μ_c, μ_c')),   μ_c = class mean
        intra_over_inter = intra / max(inter, 1e-8)

    over all samples of the split (query and gallery alike). Defect fixed: the reference's NaN
    handling indexed with the integer mask 1 − isnan; here a singleton class takes the largest
    intra distance of the other classes, as the reference intended.
    """

    arg_name = "mode"

    def __init__(self, arg: str | None = None) -> None:
        self.arg = arg
        if arg not in MODES:
            self.reject(f"dists@MODE with MODE one of {', '.join(MODES)}")
        self.mode = arg
        self.higher_is_better = arg == "inter"  # compact classes, separated classes

    def compute(self, inputs: EvalInputs) -> float:
        if inputs.labels.numel() == 0:
            return float("nan")
        if self.mode == "inter":
            return mean_inter_distance(inputs.embeddings, inputs.labels)
        intra = mean_intra_distance(inputs.embeddings, inputs.labels)
        if self.mode == "intra":
            return intra
        return intra / max(mean_inter_distance(inputs.embeddings, inputs.labels), 1e-8)
