"""Spectral decay of the embedding matrix (``rho_spectrum@k``)."""

from __future__ import annotations

import torch

from metrics import METRICS
from metrics.base import EvalInputs, Metric


def normalised_spectrum(values: torch.Tensor, mode: int) -> torch.Tensor | None:
    """s̃ = s / Σ s of the singular values ``values`` (largest first) without the |mode| − 1
    largest; None when nothing (or only zeros) is left."""
    values = values[max(abs(mode) - 1, 0) :]
    if values.numel() == 0 or values.sum() <= 0:
        return None
    return values / values.sum()


def spectral_decay(values: torch.Tensor, mode: int) -> float | torch.Tensor:
    """ρ of the singular values ``values`` (largest first), as the reference defines it.

    mode > 0: KL(U ‖ s̃), mode < 0: KL(s̃ ‖ U), s̃ the normalised spectrum without the |mode| − 1
    largest values and U uniform; mode 0: s̃ itself (a 1-D tensor). NaN when nothing is left;
    +inf when a zero singular value meets mode > 0.
    """
    spectrum = normalised_spectrum(values, mode)
    if spectrum is None:
        return float("nan") if mode else values.new_zeros(0)
    if mode == 0:
        return spectrum
    uniform = torch.full_like(spectrum, 1.0 / spectrum.numel())
    p, q = (uniform, spectrum) if mode > 0 else (spectrum, uniform)
    return torch.special.xlogy(p, p / q).sum().item()


@METRICS.register("rho_spectrum")
class RhoSpectrum(Metric):
    """Spectral decay ρ(Φ) (Roth et al., "Revisiting Training Strategies and Generalization
    Performance in Deep Metric Learning", ICML 2020, §5; spec revisiting_dml.md §7.2).

        s = singular values of the uncentred N×D embedding matrix, largest first,
        s̃ = s_{|k|:} / Σ s_{|k|:}  (without the |k| − 1 largest),
        rho_spectrum@k = KL(U ‖ s̃) for k > 0,  KL(s̃ ‖ U) for k < 0,  s̃ itself for k = 0

    over all samples of the split (the embeddings, not normalised). The paper's ρ(Φ) is
    ``rho_spectrum@2`` on the training embeddings. All min(N, D) singular values, exactly
    (``svdvals`` in float64) and on the embeddings' device, so CPU and GPU agree; the reference
    took D − 1 values from a randomised TruncatedSVD on the CPU and D on the GPU (its CPU
    definition, behind the paper's numbers, is ``rho_spectrum_revisit@k``). ``@0`` is the whole
    normalised spectrum, an array: ``eval.py`` writes it to its JSON output; the per-epoch logs
    hold scalars only (the reference logged it only as a W&B histogram).
    """

    arg_name = "k"
    higher_is_better = False  # less decay (a flatter spectrum) generalises better (§5)

    def __init__(self, arg: str | None = None) -> None:
        self.arg = arg
        try:
            self.mode = int(arg) if arg is not None else None
        except ValueError:
            self.mode = None
        if self.mode is None:
            self.reject(f"{self.registry_key}@k with an integer k (0: the whole spectrum)")
        self.scalar = self.mode != 0

    def singular_values(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Singular values of the N×D embedding matrix, largest first, float64."""
        return torch.linalg.svdvals(embeddings.double())

    def compute(self, inputs: EvalInputs) -> float | torch.Tensor:
        if inputs.embeddings.shape[0] == 0:
            return float("nan") if self.mode else inputs.embeddings.new_zeros(0)
        return spectral_decay(self.singular_values(inputs.embeddings), self.mode)
