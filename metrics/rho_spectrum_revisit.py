"""The reference's CPU ``rho_spectrum`` from D − 1 singular values (``rho_spectrum_revisit@k``)."""

from __future__ import annotations

import torch

from metrics import METRICS
from metrics.rho_spectrum import RhoSpectrum


@METRICS.register("rho_spectrum_revisit")
class RevisitRhoSpectrum(RhoSpectrum):
    """ρ(Φ) from the D − 1 largest singular values, as the Revisiting-DML reference's CPU path
    (behind the paper's numbers) computed it (Roth et al., ICML 2020; spec revisiting_dml.md §7.2).

    The reference took sklearn ``TruncatedSVD(n_components=D − 1)``, so the smallest singular
    value, which dominates KL(U ‖ s̃), is ignored; ``rho_spectrum@k`` uses all of them.

        s = the D − 1 largest singular values of the uncentred N×D embedding matrix,
        s̃ = s_{|k|:} / Σ s_{|k|:},  KL(U ‖ s̃) for k > 0,  KL(s̃ ‖ U) for k < 0,  s̃ for k = 0

    Exact singular values (the reference's randomised solver, n_iter 7, approximates them).
    """

    def singular_values(self, embeddings: torch.Tensor) -> torch.Tensor:
        return super().singular_values(embeddings)[: embeddings.shape[1] - 1]
