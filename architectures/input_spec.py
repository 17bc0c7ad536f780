"""What an architecture expects as input; datasets build their transforms from it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputSpec:
    """Input contract of a backbone.

    Images reach the model as float tensors C×H×W in [0, 1] of side ``size`` with ``channels``
    channels; the model itself applies ``(x * scale - mean) / std`` (after flipping RGB to BGR when
    ``bgr``), so attacks and augmentations work in pixel space.

    ``fixed_size``: the network only accepts exactly ``size`` (e.g. C2F2's fully connected layer).
    """

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    bgr: bool = False
    scale: float = 1.0
    fixed_size: bool = False


IMAGENET = InputSpec(size=224, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
