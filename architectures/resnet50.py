"""ResNet-50 backbone (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016)."""

from __future__ import annotations

from torch import nn

from architectures import ARCHITECTURES
from architectures.base import EmbeddingModel
from architectures.input_spec import IMAGENET

# torchvision's ResNet50_Weights.IMAGENET1K_V1.url
RESNET50_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"


@ARCHITECTURES.register("resnet50")
class ResNet50(EmbeddingModel):
    """torchvision ResNet-50; features = global average pool of layer4 (B×2048), GAP + GMP with
    `_double` (IDML's `Resnet50`; DADA's `resnet50_frozen_layernorm_double`).

    f = avgpool(layer4(...conv1(x'))), e = last_linear(f) with last_linear: 2048 → embed_dim.
    The reference's headline model (Roth et al., "Revisiting Training Strategies and
    Generalization Performance in Deep Metric Learning", ICML 2020) with `_frozen_normalize`.
    """

    input_spec = IMAGENET
    pooling_module = "avgpool"
    weights_url = RESNET50_URL
    classifier_prefixes = ("fc.",)

    def build_backbone(self) -> tuple[nn.Module, int]:
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        net.fc = nn.Identity()
        return net, 2048
