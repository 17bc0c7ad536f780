"""What the adversarial defenses share: the ``--defense_*`` PGD flags, the inner maximisation on
the one PGD engine (``attacks/pgd.py``), the distance of ``--defense_metric`` and the choice of
the triplets that are perturbed (robustness.md §4.1).

Per input size the defaults are robrank's (``configs_rank.py``): 28×28 inputs ε = 77/255,
α = 3/255; larger inputs ε = 8/255, α = 1/255; η = 32 PGD steps for both (the CVPR'22 paper's
default is η = 8 [paper] against 32 in the code [code]); η = 1 is FGSM (one step of size ε).
No random start. The model is in eval mode during the inner PGD (batch norm uses its running
statistics; with an ``_frozen`` backbone it always does) and back in train mode for the outer
step.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import architectures
from attacks.base import embedding_form
from attacks.pgd import PGDResult, pgd
from criteria import CRITERIA
from defenses import mixup
from defenses.base import Terms, TrainingStep
from utilities.embedding import evaluating
from utilities.errors import ConfigError
from utilities.flag_types import pixel_radius, positive_int
from utilities.precision import Precision

METRICS = ("N", "E", "C")
SMALL_INPUT = 28  # robrank's 28×28 configuration (MNIST, Fashion-MNIST)
DEFAULTS = {True: (77 / 255, 3 / 255), False: (8 / 255, 1 / 255)}  # small input: (ε, α)
ANCHOR_MODES = ("pair", "all")


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """The flags every adversarial defense reads."""
    group.add_argument(
        "--defense_eps",
        type=pixel_radius,
        default=None,
        help="L∞ radius ε of the adversary in [0,1] pixel space (default: 77/255 for 28×28 "
        "inputs, 8/255 otherwise, as robrank)",
    )
    group.add_argument(
        "--defense_alpha",
        type=pixel_radius,
        default=None,
        help="PGD step α (default: 3/255 for 28×28 inputs, 1/255 otherwise)",
    )
    group.add_argument(
        "--defense_pgditer",
        type=positive_int,
        default=32,
        help="PGD iterations η of the adversary; 1 = FGSM with step ε (robrank's code: 32; "
        "the CVPR'22 paper: 8); a step costs η+1 forward/backward passes",
    )
    group.add_argument(
        "--defense_metric",
        choices=METRICS,
        default="N",
        help="distance of the adversary's objective: N Euclidean on L2-normalised embeddings, "
        "E Euclidean, C cosine (robrank's metric suffix)",
    )
    group.add_argument(
        "--defense_anchors",
        choices=ANCHOR_MODES,
        default="pair",
        help="act/hm: which mined triplets are perturbed: pair = one per positive pair (those "
        "whose anchor precedes its positive in the batch; on SPC-2 batches robrank's anchors, "
        "so a step costs η+1 passes of the batch), all = every mined triplet (twice the cost)",
    )


def pgd_radius(opt: argparse.Namespace) -> tuple[float, float]:
    """(ε, α) of the flags, or robrank's defaults for the architecture's input size."""
    small = architectures.input_spec(opt.arch).size <= SMALL_INPUT
    default_eps, default_alpha = DEFAULTS[small]
    eps = default_eps if opt.defense_eps is None else float(opt.defense_eps)
    alpha = default_alpha if opt.defense_alpha is None else float(opt.defense_alpha)
    return eps, alpha


def metric_distance(x: torch.Tensor, y: torch.Tensor, metric: str) -> torch.Tensor:
    """Row-wise d(x_i, y_i) of embeddings already in the metric's form: 1 − ⟨x,y⟩ for C,
    sqrt(‖x − y‖² + 1e-8) for N and E (finite gradient where x = y)."""
    if metric == "C":
        return 1.0 - (x * y).sum(-1)
    return ((x - y).pow(2).sum(-1) + 1e-8).sqrt()


def hardness(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
             metric: str) -> torch.Tensor:  # fmt: skip
    """Triplet hardness H = d(a,p) − d(a,n) (CVPR'22 §3; in [−2, 2] on the unit sphere)."""
    return metric_distance(anchor, positive, metric) - metric_distance(anchor, negative, metric)


def perturbed_triplets(mined: torch.Tensor, mode: str) -> torch.Tensor:
    """The mined triplets a defense perturbs: all of them, or (``pair``) one per positive pair:
    those with p ≥ a (so a pair (i, j) mined in both directions is used once)."""
    if mode == "all":
        return mined
    return mined[mined[:, 1] >= mined[:, 0]]


@dataclass
class Adversary:
    """The inner maximisation: PGD on the model in eval mode, within ε of the images and [0,1].

    ``objective(embeds)`` maps the embeddings of the perturbed images, in the metric's form, to
    the scalar PGD minimises.
    """

    model: nn.Module
    precision: Precision
    eps: float
    alpha: float
    steps: int
    metric: str

    @classmethod
    def from_options(
        cls, opt: argparse.Namespace, model: nn.Module, precision: Precision
    ) -> Adversary:
        eps, alpha = pgd_radius(opt)
        return cls(model, precision, eps, alpha, int(opt.defense_pgditer), opt.defense_metric)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings of the model in its current mode, in the metric's form, float32."""
        with self.precision.autocast():
            embeds = self.model(images)["embeds"]
        return embedding_form(embeds.float(), self.metric)

    @torch.no_grad()
    def benign_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's outputs (raw embeddings, features, uncertainty with ``--idml``) of the
        clean images in eval mode (no gradient), as float32."""
        with evaluating(self.model), self.precision.autocast():
            outputs = self.model(images)
        return {name: value.float() for name, value in outputs.items()}

    def benign(self, images: torch.Tensor) -> torch.Tensor:
        """The model's raw embeddings of the clean images in eval mode (no gradient)."""
        return self.benign_outputs(images)["embeds"]

    def perturb(
        self,
        images: torch.Tensor,
        objective: Callable[[torch.Tensor], torch.Tensor],
        stop_tolerance: float | None = None,
    ) -> PGDResult:
        """Adversarial images minimising ``objective`` (``steps`` PGD iterations, fewer with a
        stop tolerance)."""
        with evaluating(self.model):
            return pgd(
                lambda x: objective(self.embed(x)),
                images,
                eps=self.eps,
                alpha=self.alpha,
                steps=self.steps,
                stop_tolerance=stop_tolerance,
            )


class AdversarialStep(TrainingStep):
    """A training step with an adversary (``self.adversary``) built from the ``--defense_*``
    flags (their ranges are checked by their argparse types). The adversarial steps do not
    train IDML's input mixup (``--input_mixup`` is rejected at start-up)."""

    def __init__(self, opt: argparse.Namespace, *args: object) -> None:
        super().__init__(opt, *args)  # type: ignore[arg-type]
        self.adversary = Adversary.from_options(opt, self.model, self.precision)
        self.metric = self.adversary.metric

    @classmethod
    def check_options(cls, opt: argparse.Namespace) -> None:
        mixup.check_unsupported(opt, cls.registry_key)


def triplet_losses() -> list[str]:
    """The ``--loss`` keys trained on mined triplets (the losses ACT and HM can serve)."""
    return [
        key
        for key, loss in CRITERIA.items()
        if loss.requires_batchminer and "triplets" in loss.miner_outputs
    ]


def concat_outputs(*outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The outputs of several forward passes as one batch (each output concatenated)."""
    return {name: torch.cat([output[name] for output in outputs]) for name in outputs[0]}


class TripletDefense(AdversarialStep):
    """An adversarial step that perturbs mined triplets and trains the loss on them. With
    ``--idml`` the uncertainties of the three triplet blocks go to the loss with them (the
    introspective similarity applies to the adversarial triplets)."""

    def __init__(self, opt: argparse.Namespace, *args: object) -> None:
        super().__init__(opt, *args)
        self.anchor_mode = opt.defense_anchors

    def form(self, embeds: torch.Tensor) -> torch.Tensor:
        """``embeds`` in the form ``--defense_metric`` compares them."""
        return embedding_form(embeds, self.metric)

    @classmethod
    def check_options(cls, opt: argparse.Namespace) -> None:
        super().check_options(opt)
        servable = triplet_losses()
        if opt.loss not in servable:
            raise ConfigError(
                f"--defense {cls.registry_key}: cannot serve --loss {opt.loss} (it is not "
                f"trained on mined triplets); losses it can serve: {', '.join(servable)}"
            )

    def triplet_loss(
        self,
        anchor: torch.Tensor,
        positive: torch.Tensor,
        negative: torch.Tensor,
        labels: torch.Tensor,
        mined: torch.Tensor,
        uncertainty: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loss on T triplets given as three T×D embedding blocks (``labels`` and ``mined``
        of the batch the triplets were mined from); ``uncertainty`` (3T×E, with ``--idml``) the
        uncertainties of the anchor, positive and negative blocks, in that order."""
        count = len(mined)
        index = torch.arange(count, device=anchor.device)
        reindexed = torch.stack([index, index + count, index + 2 * count], dim=1)
        embeds = torch.cat([anchor, positive, negative])
        context = {} if uncertainty is None else {"uncertainty": uncertainty}
        return self.criterion(embeds, labels[mined.T.reshape(-1)], mined=reindexed, **context)

    def skip(self, device: torch.device) -> Terms:
        """The terms of a batch without a triplet to perturb; nothing is updated."""
        self.passes = 1
        return {"loss": torch.zeros((), device=device)}
