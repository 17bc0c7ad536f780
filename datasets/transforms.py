"""Train and evaluation transforms from ``--augmentation`` and the architecture's input spec.

Every transform first converts the PIL image to the spec's channel count ('L' or 'RGB'), then
augments at crop size S = ``spec.size`` and ends with ToTensor (values in [0, 1]); mean/std
normalisation happens inside the model. The sizes follow the reference table (revisiting_dml.md
§8.3) scaled by S/224, so S = 224 gives exactly the reference numbers:

- ``base``: train RandomResizedCrop(S) → HFlip; evaluation Resize(R) → CenterCrop(S).
- ``adv``: train RRC(S) → RandomGrayscale(0.2) → ColorJitter(0.2, 0.2, 0.2, 0.2) → HFlip;
  evaluation as ``base``.
- ``big``: train RRC(R) → HFlip; evaluation Resize(R) → CenterCrop(R) (the reference's 256 crops).
- ``red``: train Resize(R) → RandomCrop(S) → HFlip; evaluation as ``base``.
- ``auto``: train AutoAugment (torchvision's ImageNet policy) → RRC(S) → HFlip; evaluation as
  ``base`` (DADA's Cars recipe, methods.md §B.4).
- ``none``: Resize((S, S)) for both; the default of the 28×28 datasets, which RobRank feeds
  through ToTensor only (an exact resize, so any image reaches the spec's shape).

with R = round(256·S/224). torchvision is imported by the two builders, not by the module: its
import takes seconds (it pulls torch._dynamo) that ``--help`` should not pay.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

from architectures.input_spec import InputSpec
from utilities.errors import ConfigError

AUGMENTATIONS = ("base", "adv", "big", "red", "auto", "none")


class ConvertMode:
    """PIL image → mode ``'L'`` (1 channel) or ``'RGB'`` (3 channels)."""

    def __init__(self, channels: int) -> None:
        modes = {1: "L", 3: "RGB"}
        if channels not in modes:
            raise ConfigError(f"--arch: input spec asks for {channels} channels; expected 1 or 3")
        self.mode = modes[channels]

    def __call__(self, image: Image.Image) -> Image.Image:
        return image if image.mode == self.mode else image.convert(self.mode)

    def __repr__(self) -> str:
        return f"ConvertMode({self.mode!r})"


def _scaled(spec: InputSpec) -> int:
    """The reference's 256 at S = 224, scaled to the spec's size."""
    return round(256 * spec.size / 224)


def _check(augmentation: str, spec: InputSpec) -> None:
    if augmentation not in AUGMENTATIONS:
        raise ConfigError(
            f"--augmentation: unknown augmentation {augmentation!r}; "
            f"valid: {', '.join(AUGMENTATIONS)}"
        )
    if augmentation == "big" and spec.fixed_size:
        raise ConfigError(
            f"--augmentation: 'big' crops {_scaled(spec)} px, but the architecture only accepts "
            f"{spec.size} px inputs; expected base, adv, red or none"
        )


def train_transform(augmentation: str, spec: InputSpec) -> Callable[[Image.Image], object]:
    """The training transform of ``--augmentation`` for ``spec``."""
    from torchvision import transforms as T

    _check(augmentation, spec)
    size, resized = spec.size, _scaled(spec)
    steps: dict[str, list] = {
        "base": [T.RandomResizedCrop(size), T.RandomHorizontalFlip()],
        "adv": [
            T.RandomResizedCrop(size),
            T.RandomGrayscale(0.2),
            T.ColorJitter(0.2, 0.2, 0.2, 0.2),
            T.RandomHorizontalFlip(),
        ],
        "big": [T.RandomResizedCrop(resized), T.RandomHorizontalFlip()],
        "red": [T.Resize(resized), T.RandomCrop(size), T.RandomHorizontalFlip()],
        "auto": [
            T.AutoAugment(T.AutoAugmentPolicy.IMAGENET),
            T.RandomResizedCrop(size),
            T.RandomHorizontalFlip(),
        ],
        "none": [T.Resize((size, size))],
    }
    return T.Compose([ConvertMode(spec.channels), *steps[augmentation], T.ToTensor()])


def eval_transform(augmentation: str, spec: InputSpec) -> Callable[[Image.Image], object]:
    """The evaluation transform matching ``--augmentation`` for ``spec``."""
    from torchvision import transforms as T

    _check(augmentation, spec)
    size, resized = spec.size, _scaled(spec)
    if augmentation == "none":
        steps = [T.Resize((size, size))]
    elif augmentation == "big":
        steps = [T.Resize(resized), T.CenterCrop(resized)]
    else:
        steps = [T.Resize(resized), T.CenterCrop(size)]
    return T.Compose([ConvertMode(spec.channels), *steps, T.ToTensor()])
