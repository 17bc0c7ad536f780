"""`EmbeddingModel`: a backbone, a linear embedding head and the input normalisation.

Every registered architecture derives from `EmbeddingModel` and supplies four things: its
`input_spec`, a `build_backbone()` returning a module that maps normalised images to pooled
features B×F, `pooling_module` (the backbone attribute that pools the last feature map to 1×1,
which `_double` replaces by `GlobalAvgMaxPool`; None when the backbone flattens instead) and
(when ImageNet weights exist) `weights_url` plus the checkpoint entries that belong to the
1000-class classifier and are dropped (`classifier_prefixes`).
The backbone library (torchvision, pretrainedmodels) is imported inside `build_backbone` and
`weights_url` is a literal: every module is imported to register its class, and importing
torchvision takes seconds (it pulls torch._dynamo) that `--help` or an evaluation of saved
embeddings should not pay.
"""

from __future__ import annotations

import os
import pickle

import torch
import torch.nn.functional as F
from torch import nn

from architectures.input_spec import InputSpec
from utilities.errors import ConfigError

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class EmbeddingModel(nn.Module):
    """Image → embedding network: normalise, backbone, `last_linear`, optional LayerNorm and L2
    normalisation, optional IDML uncertainty head.

    x (B×C×H×W in [0, 1]) → x' = (flip_bgr(x) · scale − mean) / std → f = backbone(x') (B×F)
    → e = last_linear(f) (B×embed_dim) → e = LayerNorm(e) when `layernorm` → e / ‖e‖₂ when
    `normalize`; with `idml` also u = act(uncertainty_head(f)) (B×embed_dim, never normalised).

    `frozen`: every BatchNorm layer stays in eval mode (running statistics are neither used from
    the batch nor updated) through `model.train()`; its affine weight and bias stay trainable.
    `double`: the backbone's global average pooling (`pooling_module`) becomes GAP + GMP, summed
    (IDML's ResNet-50, DADA's `double`); F is unchanged.
    `layernorm`: LayerNorm(embed_dim) without elementwise affine on e (DADA's `layernorm`): each
    row becomes (e − mean) / √(var + 1e-5), so mean 0, variance ≈ 1 and norm ≈ √embed_dim;
    applied before the optional L2 normalisation.
    `idml`: `uncertainty_head` = Linear(F, embed_dim), PyTorch's default initialisation, reading
    the same f as `last_linear` (Wang et al., "Introspective Deep Metric Learning", TPAMI 2023);
    `uncertainty_activation` "none" (its metric-learning code) or "relu" (its classification
    variant). The ISM loss, not the model, normalises u when asked to.
    `pretrained`: load ImageNet weights into the backbone (from `pretrained_path`, else from the
    torch hub cache); ignored by architectures without ImageNet weights (`weights_url is None`).
    """

    input_spec: InputSpec
    pooling_module: str | None = None
    weights_url: str | None = None
    classifier_prefixes: tuple[str, ...] = ()

    def __init__(
        self,
        embed_dim: int,
        frozen: bool,
        normalize: bool,
        pretrained: bool,
        pretrained_path: str | None = None,
        *,
        double: bool = False,
        layernorm: bool = False,
        idml: bool = False,
        uncertainty_activation: str = "none",
    ) -> None:
        super().__init__()
        if uncertainty_activation not in ("none", "relu"):
            raise ConfigError(
                f"--idml_uncertainty_activation: {uncertainty_activation!r}; expected none or relu"
            )
        self.frozen = frozen
        self.normalize = normalize
        spec = self.input_spec
        self.register_buffer("pixel_mean", _channel_vector(spec.mean), persistent=False)
        self.register_buffer("pixel_std", _channel_vector(spec.std), persistent=False)
        self.backbone, feature_dim = self.build_backbone()
        if double:
            self.replace_pooling(GlobalAvgMaxPool())
        if pretrained and self.weights_url is not None:
            path = pretrained_weights_file(self.weights_url, pretrained_path)
            load_backbone_weights(self.backbone, path, self.classifier_prefixes)
        self.last_linear = nn.Linear(feature_dim, embed_dim)
        # No parameters: state dicts are the same with and without `layernorm`.
        self.embedding_norm = (
            nn.LayerNorm(embed_dim, elementwise_affine=False) if layernorm else None
        )
        # Created after last_linear, so a seed gives last_linear the same weights either way.
        self.uncertainty_head = nn.Linear(feature_dim, embed_dim) if idml else None
        self.uncertainty_activation = uncertainty_activation
        self.train()

    def build_backbone(self) -> tuple[nn.Module, int]:
        """The feature extractor (normalised B×C×H×W → pooled B×F) and its width F."""
        raise NotImplementedError

    def replace_pooling(self, pool: nn.Module) -> None:
        """Put `pool` in place of the backbone's `pooling_module` (B×F×H×W → B×F×1×1)."""
        current = getattr(self.backbone, self.pooling_module or "", None)
        if not isinstance(current, nn.Module):
            raise ConfigError(
                f"--arch: {type(self).__name__} has no pooling step to replace "
                f"(pooling_module {self.pooling_module!r}); expected a backbone that pools"
            )
        setattr(self.backbone, self.pooling_module, pool)

    def normalise_input(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel space [0, 1] → the backbone's input space, as described by `input_spec`."""
        if self.input_spec.bgr:
            x = x.flip(1)
        return (x * self.input_spec.scale - self.pixel_mean) / self.pixel_std

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """B×C×H×W in [0, 1] → {"embeds": B×embed_dim, "features": B×F (pooled backbone
        output)}, plus "uncertainty": B×embed_dim with the IDML head."""
        features = self.backbone(self.normalise_input(x))
        embeds = self.last_linear(features)
        if self.embedding_norm is not None:
            embeds = self.embedding_norm(embeds)
        if self.normalize:
            embeds = F.normalize(embeds, dim=-1)
        outputs = {"embeds": embeds, "features": features}
        if self.uncertainty_head is not None:
            uncertainty = self.uncertainty_head(features)
            outputs["uncertainty"] = (
                F.relu(uncertainty) if self.uncertainty_activation == "relu" else uncertainty
            )
        return outputs

    def train(self, mode: bool = True) -> EmbeddingModel:
        """Set train/eval mode; with `frozen`, BatchNorm layers stay in eval mode."""
        super().train(mode)
        if self.frozen:
            for module in self.modules():
                if isinstance(module, BATCH_NORMS):
                    module.eval()
        return self


class GlobalAvgMaxPool(nn.Module):
    """GAP + GMP: adaptive average pooling plus adaptive max pooling to 1×1, summed.

    B×F×H×W → B×F×1×1, the shape of the `AdaptiveAvgPool2d(1)` it replaces (IDML's `Resnet50`,
    DADA's `double` architectures).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 1) + F.adaptive_max_pool2d(x, 1)


def _channel_vector(values: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


def pretrained_weights_file(url: str, pretrained_path: str | None) -> str:
    """The ImageNet weight file to load: `pretrained_path`, else the hub cache copy of `url`.

    Weights are never downloaded; a missing file raises ConfigError saying where to get it.
    """
    remedy = (
        f"download {url} there (or anywhere and pass --pretrained_path FILE), "
        "or pass --not_pretrained to train from scratch"
    )
    if pretrained_path is not None:
        if not os.path.isfile(pretrained_path):
            raise ConfigError(
                f"--pretrained_path: ImageNet weight file {pretrained_path} not found; {remedy}"
            )
        return pretrained_path
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    if not os.path.isfile(cached):
        raise ConfigError(
            f"--pretrained_path: no ImageNet weights given and {cached} (torch hub cache) "
            f"not found; {remedy}"
        )
    return cached


def load_backbone_weights(backbone: nn.Module, path: str, drop_prefixes: tuple[str, ...]) -> None:
    """Load an ImageNet state dict into `backbone`, without the classifier entries.

    Every remaining entry must match the backbone exactly (names and shapes); anything else
    raises ConfigError naming the file.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as error:
        raise ConfigError(f"--pretrained_path: cannot read weight file {path}: {error}") from None
    if not isinstance(state, dict):
        raise ConfigError(
            f"--pretrained_path: {path} holds a {type(state).__name__}, expected a state dict"
        )
    kept = type(state)((k, v) for k, v in state.items() if not k.startswith(drop_prefixes))
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:
        kept._metadata = metadata
    try:
        backbone.load_state_dict(kept, strict=True)
    except RuntimeError as error:
        reason = " ".join(str(error).split())
        raise ConfigError(
            f"--pretrained_path: {path} does not fit the backbone ({reason[:300]}); "
            "expected the official ImageNet weights of this architecture"
        ) from None
