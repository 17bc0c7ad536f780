"""GoogLeNet backbone (Szegedy et al., "Going Deeper with Convolutions", CVPR 2015), torchvision's
BatchNorm variant."""

from __future__ import annotations

from torch import nn

from architectures import ARCHITECTURES
from architectures.base import EmbeddingModel
from architectures.input_spec import InputSpec

# torchvision's GoogLeNet_Weights.IMAGENET1K_V1.url
GOOGLENET_URL = "https://download.pytorch.org/models/googlenet-1378be20.pth"


@ARCHITECTURES.register("googlenet")
class GoogLeNetEmbedding(EmbeddingModel):
    """torchvision GoogLeNet without auxiliary heads; features = global average pool (B×1024);
    GAP + GMP with `_double`.

    Input side 227 as in the reference. torchvision's ImageNet weights were trained on
    x' = (x − 0.5) / 0.5; its pretrained model gets there with `transform_input=True`, which maps
    ImageNet-normalised input back to (x − 0.5) / 0.5. We build the net with
    `transform_input=False` and normalise with mean = std = 0.5 directly, so the convolutions see
    the same input. Unlike the reference, the forward returns the usual dict, and `_frozen` and
    `--not_pretrained` are honoured.
    """

    input_spec = InputSpec(size=227, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    pooling_module = "avgpool"
    weights_url = GOOGLENET_URL
    classifier_prefixes = ("fc.", "aux1.", "aux2.")

    def build_backbone(self) -> tuple[nn.Module, int]:
        from torchvision.models import GoogLeNet

        net = GoogLeNet(aux_logits=False, transform_input=False, init_weights=True)
        net.dropout = nn.Identity()
        net.fc = nn.Identity()
        return net, 1024
