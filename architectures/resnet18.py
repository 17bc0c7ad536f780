"""ResNet-18 backbone (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016)."""

from __future__ import annotations

from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from architectures import ARCHITECTURES
from architectures.base import EmbeddingModel
from architectures.input_spec import IMAGENET


@ARCHITECTURES.register("resnet18")
class ResNet18(EmbeddingModel):
    """torchvision ResNet-18; features = global average pool of layer4 (B×512).

    f = avgpool(layer4(...conv1(x'))), e = last_linear(f) with last_linear: 512 → embed_dim.
    The CUB/Cars/SOP backbone of the robustness experiments (Zhou et al., "Enhancing Adversarial
    Robustness for Deep Metric Learning", CVPR 2022).
    """

    input_spec = IMAGENET
    weights_url = ResNet18_Weights.IMAGENET1K_V1.url
    classifier_prefixes = ("fc.",)

    def build_backbone(self) -> tuple[nn.Module, int]:
        net = resnet18(weights=None)
        net.fc = nn.Identity()
        return net, 512
