"""The projected-gradient engine every attack uses (L∞ PGD, Madry et al., ICLR 2018; FGSM,
Goodfellow et al., ICLR 2015), as robrank's AdvRank runs it (robustness.md §2.1).

    x⁰ = x  (or clip₀¹(x + ε·U[−1,1]) with a random start)
    xᵗ = clip₀¹( Proj_{‖·−x‖∞ ≤ ε}( xᵗ⁻¹ − s·sign(∇ₓ L(xᵗ⁻¹)) ) ),   t = 1..T
    s = α for T > 1, s = ε for T = 1 (FGSM)

L is minimised (objectives to maximise are negated by the attack). Images live in [0,1] pixel
space; the architecture normalises inside its forward pass, so ε is a pixel-space radius.
With a stop tolerance τ the loop ends after step t when |L(xᵗ⁻¹) − L(xᵗ⁻²)| < τ (robrank's HM
"saturation" stop). The attacks of ``attacks/`` and the adversarial-training defenses of
``defenses/`` all run this one engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class PGDResult:
    """``adversarial``: the final iterate xᵀ; ``penultimate``: xᵀ⁻¹ (the last image whose
    gradient was taken, robrank's ES:D quirk); ``iterations``: the steps taken (T, fewer after
    an early stop)."""

    adversarial: torch.Tensor
    penultimate: torch.Tensor
    iterations: int


def pgd(
    loss: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = False,
    generator: torch.Generator | None = None,
    stop_tolerance: float | None = None,
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
    last_value: float | None = None
    iterations = 0
    for _ in range(steps):
        previous = current.detach().requires_grad_(True)
        value = loss(previous)
        (gradient,) = torch.autograd.grad(value, previous)
        previous = previous.detach()
        current = torch.minimum(torch.maximum(previous - step * gradient.sign(), lower), upper)
        iterations += 1
        if stop_tolerance is not None:
            now = value.item()
            if last_value is not None and abs(now - last_value) < stop_tolerance:
                break
            last_value = now
    return PGDResult(adversarial=current.detach(), penultimate=previous, iterations=iterations)
