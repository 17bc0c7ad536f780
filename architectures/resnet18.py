"""ResNet-18 backbone (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016)."""

from __future__ import annotations

from torch import nn

from architectures import ARCHITECTURES
from architectures.base import EmbeddingModel
from architectures.input_spec import IMAGENET

# torchvision's ResNet18_Weights.IMAGENET1K_V1.url
RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


@ARCHITECTURES.register("resnet18")
class ResNet18(EmbeddingModel):
    """torchvision ResNet-18; features = global average pool of layer4 (B×512), GAP + GMP with
    `_double`.

    f = avgpool(layer4(...conv1(x'))), e = last_linear(f) with last_linear: 512 → embed_dim.
    The CUB/Cars/SOP backbone of the robustness experiments (Zhou et al., "Enhancing Adversarial
    Robustness for Deep Metric Learning", CVPR 2022).
    """

    input_spec = IMAGENET
    pooling_module = "avgpool"
    weights_url = RESNET18_URL
    classifier_prefixes = ("fc.",)

    def build_backbone(self) -> tuple[nn.Module, int]:
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        net.fc = nn.Identity()
        return net, 512
