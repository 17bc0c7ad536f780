"""The projected-gradient engine every attack uses (L∞ PGD, Madry et al., ICLR 2018; FGSM,
Goodfellow et al., ICLR 2015), as robrank's AdvRank runs it (robustness.md §2.1).

    x⁰ = x  (or clip₀¹(x + ε·U[−1,1]) with a random start)
    xᵗ = clip₀¹( Proj_{‖·−x‖∞ ≤ ε}( xᵗ⁻¹ − s·sign(∇ₓ L(xᵗ⁻¹)) ) ),   t = 1..T
    s = α for T > 1, s = ε for T = 1 (FGSM)

L is minimised (objectives to maximise are negated by the attack). Images live in [0,1] pixel
space; the architecture normalises inside its forward pass, so ε is a pixel-space radius.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class PGDResult:
    """``adversarial``: the final iterate xᵀ; ``penultimate``: xᵀ⁻¹ (the last image whose
    gradient was taken, robrank's ES:D quirk)."""

    adversarial: torch.Tensor
    penultimate: torch.Tensor


def pgd(
    loss: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = False,
    generator: torch.Generator | None = None,
) -> PGDResult:
    """Minimise ``loss(x)`` (a scalar) over the L∞ ball of radius ``eps`` around ``images``
    (B×C×H×W in [0,1]) intersected with [0,1], by ``steps`` signed-gradient steps.

    Only the input gradient is computed (``torch.autograd.grad``); model parameters get no
    ``.grad``. ``generator`` (CPU) draws the random start, so it is seeded on every device.
    """
    images = images.detach()
    lower = (images - eps).clamp(min=0.0)
    upper = (images + eps).clamp(max=1.0)
    current = images.clone()
    if random_start:
        noise = torch.rand(images.shape, generator=generator).to(images.device)
        current = (images + eps * (2.0 * noise - 1.0)).clamp(0.0, 1.0)
    step = eps if steps == 1 else alpha
    previous = current
    for _ in range(steps):
        previous = current.detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(loss(previous), previous)
        previous = previous.detach()
        current = torch.minimum(torch.maximum(previous - step * gradient.sign(), lower), upper)
    return PGDResult(adversarial=current.detach(), penultimate=previous)
