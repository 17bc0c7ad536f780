"""C2F2: the small MNIST/Fashion-MNIST network of the robustness references (Zhou et al.,
"Adversarial Ranking Attack and Defense", ECCV 2020; robrank's `rc2f2`)."""

from __future__ import annotations

from torch import nn

from architectures import ARCHITECTURES
from architectures.base import EmbeddingModel
from architectures.input_spec import InputSpec


@ARCHITECTURES.register("c2f2")
class C2F2(EmbeddingModel):
    """Two convolutions, two fully connected layers, on 1×28×28 images in [0, 1] (no normalisation).

    Conv(1→32, k5, p2)–ReLU–MaxPool2 – Conv(32→64, k5, p2)–ReLU–MaxPool2 – Flatten(3136)
    – FC(3136→1024)–ReLU = features (B×1024); last_linear FC(1024→embed_dim) = embedding.
    Trained from scratch: it has no pretrained weights and never looks for any. It flattens its
    feature map instead of pooling it (`pooling_module = None`), so `_double` is refused.
    """

    input_spec = InputSpec(size=28, channels=1, mean=(0.0,), std=(1.0,), fixed_size=True)
    pooling_module = None

    def build_backbone(self) -> tuple[nn.Module, int]:
        net = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 1024),
            nn.ReLU(),
        )
        return net, 1024
