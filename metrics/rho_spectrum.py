"""Spectral decay of the embedding matrix (``rho_spectrum@k``)."""

from __future__ import annotations

import torch

from metrics import METRICS
from metrics.base import EvalInputs, Metric


def spectral_decay(embeddings: torch.Tensor, mode: int) -> float:
    """KL divergence between the uniform distribution and the normalised singular values.

    s = singular values of the (uncentred) N×D matrix, largest first; the |mode| − 1 largest
    are dropped, s̃ = s / Σ s; mode > 0: KL(U ‖ s̃), mode < 0: KL(s̃ ‖ U). NaN when nothing is
    left; +inf when a zero singular value meets mode > 0.
    """
    values = torch.linalg.svdvals(embeddings.double())[abs(mode) - 1 :]
    if values.numel() == 0 or values.sum() <= 0:
        return float("nan")
    spectrum = values / values.sum()
    uniform = torch.full_like(spectrum, 1.0 / spectrum.numel())
    p, q = (uniform, spectrum) if mode > 0 else (spectrum, uniform)
    return torch.special.xlogy(p, p / q).sum().item()


@METRICS.register("rho_spectrum")
class RhoSpectrum(Metric):
    """Spectral decay ρ(Φ) (Roth et al., "Revisiting Training Strategies and Generalization
    Performance in Deep Metric Learning", ICML 2020, §5; spec revisiting_dml.md §7.2).

        s̃ = s_{|k|:} / Σ s_{|k|:}  (singular values without the |k| − 1 largest),
        rho_spectrum@k = KL(U ‖ s̃) for k > 0,  KL(s̃ ‖ U) for k < 0

    over all samples of the split. All min(N, D) singular values, exactly (``svdvals`` in float64)
    and on the embeddings' device, so CPU and GPU agree; the reference took D − 1 values from a
    randomised TruncatedSVD on the CPU and D on the GPU. ``@0`` (the whole spectrum, an array the
    reference logged only as a W&B histogram) is not a scalar and is refused.
    """

    arg_name = "k"

    def __init__(self, arg: str | None = None) -> None:
        self.arg = arg
        try:
            self.mode = int(arg) if arg is not None else 0
        except ValueError:
            self.mode = 0
        if self.mode == 0:
            self.reject("rho_spectrum@k with a non-zero integer k (@0, the array, is not logged)")

    def compute(self, inputs: EvalInputs) -> float:
        if inputs.embeddings.shape[0] == 0:
            return float("nan")
        return spectral_decay(inputs.embeddings, self.mode)
