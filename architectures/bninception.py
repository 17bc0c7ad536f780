"""BN-Inception backbone (Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift", ICML 2015), Caffe port from `pretrainedmodels`."""

from __future__ import annotations

from torch import nn

from architectures import ARCHITECTURES
from architectures.base import EmbeddingModel
from architectures.input_spec import InputSpec

BNINCEPTION_URL = "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth"


@ARCHITECTURES.register("bninception")
class BNInception(EmbeddingModel):
    """pretrainedmodels BN-Inception; features = adaptive average pool of inception_5b (B×1024);
    GAP + GMP with `_double`.

    Its Caffe weights expect BGR images in 0–255 minus the BGR mean (104, 117, 128), std 1:
    x' = flip_bgr(x) · 255 − (104, 117, 128). The reference writes the same thing as
    Normalize(mean=(0.502, 0.4588, 0.4078), std=0.0039) followed by an RGB→BGR flip; 0.0039 · 255
    = 0.9945, so the two agree to 0.6% in scale and exactly in mean.
    """

    input_spec = InputSpec(
        size=224, channels=3, mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0), bgr=True, scale=255.0
    )
    pooling_module = "global_pool"
    weights_url = BNINCEPTION_URL
    classifier_prefixes = ("last_linear.",)

    def build_backbone(self) -> tuple[nn.Module, int]:
        # Imported here: importing pretrainedmodels loads all its model zoo and takes seconds.
        from pretrainedmodels.models.bninception import bninception

        net = bninception(num_classes=1000, pretrained=None)
        net.global_pool = nn.AdaptiveAvgPool2d(1)
        net.last_linear = nn.Identity()
        return net, 1024
