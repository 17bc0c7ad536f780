"""HM: Hardness Manipulation adversarial training, with the gradual adversary and ICS
(robustness.md §4.4)."""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch
import torch.nn.functional as F

import batch_mining
from defenses import DEFENSES
from defenses.adversary import (
    TripletDefense,
    concat_outputs,
    hardness,
    metric_distance,
    perturbed_triplets,
)
from defenses.base import Terms
from utilities.errors import ConfigError
from utilities.flag_types import nonnegative_float, positive_float

OBJECTIVES = ("et", "kl", "l2")
GRADUAL = ("off", "linear", "square", "sqrt", "boost")
INITIAL_PREVIOUS_LOSS = 2.0  # robrank's _hm_prev_loss before the first step


@DEFENSES.register("hm")
class HardnessManipulation(TripletDefense):
    """HM (Zhou et al., "Enhancing Adversarial Robustness for Deep Metric Learning", CVPR 2022;
    robrank's ``hm_training_step``), with hardness H(a,p,n) = d(a,p) − d(a,n) in
    ``--defense_metric`` (N: in [−2, 2]).

    Source triplets S (a,p,n) are mined on the benign embeddings (eval mode) by
    ``--defense_hm_source``; the destination hardness H_D of each is that of the triplet the
    ``--defense_hm_destination`` miner gives its anchor (mean over them; the source's own
    benign hardness when it gives none), or a constant. The gradual adversary
    (``--defense_hm_gradual``) reads the previous step's adversarial loss ℓ_{t−1} (2.0 before
    the first step), ℓ̄ = clip(ℓ_{t−1}, 0, u)/u, and sets

        linear (g_LGA): H_D = −γ·ℓ̄     square (g₂): −γ·ℓ̄²     sqrt (g_{1/2}): −γ·ℓ̄^{1/2}
        boost (g_B):    H_D = H_D + (1 − ℓ̄)·ξ

    PGD perturbs the three members of every source triplet (only p and n with
    ``--defense_hm_fix_anchor``: the anchor stays benign) to minimise

        et: mean_i [H_D,i − H̃_S,i]₊²      (the paper's thresholded Euclidean)
        l2: mean_i (H̃_S,i − H_D,i)²
        kl: KL(softmax(H_D) ‖ softmax(H̃_S)) over the triplets (robrank's version feeds
            L1-normalised, mostly negative hardness to kl_div as probabilities: NaN)

    stopping when the objective changes by less than ``--defense_hm_early_stop``; no
    perturbation at all when source and destination name the same miner (as robrank). Then,
    in train mode,

        L = L(ã, p̃, ñ) + λ·mean_i [d(a_i, ã_i) − d(a_i, p_i) + m]₊   (the second term: ICS)

    with a, p the benign anchor and positive (``--defense_ics``, λ, m). Serves every loss
    trained on mined triplets (with ``--idml``, its introspective similarity on the
    uncertainties of the three blocks); the source miner replaces the loss's own miner. Terms:
    ``loss``, ``loss_adversarial`` (ℓ_t), ``loss_benign``, ``loss_ics``, ``hardness_benign``
    (mean H_S of the benign source triplets), ``hardness_source`` (mean H̃_S after PGD),
    ``hardness_destination`` (mean H_D), ``pgd_iterations``.
    """

    def __init__(self, opt: argparse.Namespace, *args: Any) -> None:
        super().__init__(opt, *args)
        self.source_key = opt.defense_hm_source
        self.source = batch_mining.MINERS.get(self.source_key)(opt)
        self.destination_value = destination_constant(opt.defense_hm_destination)
        self.destination = None
        if self.destination_value is None:
            self.destination = batch_mining.MINERS.get(opt.defense_hm_destination)(opt)
        self.same_miner = opt.defense_hm_destination == self.source_key
        self.objective_name = opt.defense_hm_objective
        self.gradual = opt.defense_hm_gradual
        self.gamma = float(opt.defense_hm_gamma)
        self.u = self.gamma if opt.defense_hm_u is None else float(opt.defense_hm_u)
        self.xi = float(opt.defense_hm_xi)
        self.fix_anchor = bool(opt.defense_hm_fix_anchor)
        self.stop_tolerance = float(opt.defense_hm_early_stop) or None
        self.ics = bool(opt.defense_ics)
        self.ics_lambda = float(opt.defense_ics_lambda)
        self.ics_margin = float(opt.defense_ics_margin)
        self.previous_loss = INITIAL_PREVIOUS_LOSS

    @staticmethod
    def add_arguments(group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--defense_hm_source",
            default="softhard",
            help="hm: miner of the source triplets S (grammar letters r anchor_random, "
            "m semihard, s softhard, d distance, h hard)",
        )
        group.add_argument(
            "--defense_hm_destination",
            default="semihard",
            help="hm: miner whose triplets give the destination hardness H_D, or a constant "
            "H_D (e.g. 0, -0.1 = −γ/2, -0.2 = −γ)",
        )
        group.add_argument(
            "--defense_hm_objective",
            choices=OBJECTIVES,
            default="et",
            help="hm: PGD objective: et thresholded Euclidean (the paper), l2, kl",
        )
        group.add_argument(
            "--defense_hm_gradual",
            choices=GRADUAL,
            default="off",
            help="hm: gradual adversary from the previous loss: linear (g_LGA), square (g₂), "
            "sqrt (g_1/2) replace H_D; boost (g_B) adds (1 − ℓ̄)·ξ to it",
        )
        group.add_argument(
            "--defense_hm_gamma",
            type=positive_float,
            default=0.2,
            help="hm: γ of the gradual adversary",
        )
        group.add_argument(
            "--defense_hm_u",
            type=positive_float,
            default=None,
            help="hm: clipping bound u of the previous loss, ℓ̄ = clip(ℓ, 0, u)/u (default: γ)",
        )
        group.add_argument(
            "--defense_hm_xi",
            type=nonnegative_float,
            default=0.1,
            help="hm: ξ of the boost adversary g_B",
        )
        group.add_argument(
            "--defense_hm_fix_anchor",
            action="store_true",
            help="hm: perturb only p and n; the anchor stays benign (robrank's 'rh', broken there)",
        )
        group.add_argument(
            "--defense_hm_early_stop",
            type=nonnegative_float,
            default=1e-7,
            help="hm: stop PGD when the objective changes by less than this (0: never)",
        )
        group.add_argument(
            "--defense_ics",
            action="store_true",
            help="hm: add the intra-class structure term λ·mean[d(a,ã) − d(a,p) + m]₊",
        )
        group.add_argument(
            "--defense_ics_lambda",
            type=nonnegative_float,
            default=0.5,
            help="hm: weight λ of ICS (robrank 0.5; the CVPR'22 paper used 0.05 on SOP)",
        )
        group.add_argument(
            "--defense_ics_margin", type=nonnegative_float, default=0.0, help="hm: margin m of ICS"
        )

    @classmethod
    def check_options(cls, opt: argparse.Namespace) -> None:
        super().check_options(opt)
        check_triplet_miner(opt.defense_hm_source, "--defense_hm_source")
        constant = destination_constant(opt.defense_hm_destination)
        if constant is None:
            check_triplet_miner(opt.defense_hm_destination, "--defense_hm_destination")
        elif not math.isfinite(constant):
            raise ConfigError(
                f"--defense_hm_destination: got {constant}, expected a miner or a finite hardness"
            )
        if opt.defense_ics and opt.defense_hm_fix_anchor:
            raise ConfigError(
                "--defense_ics: ICS compares the perturbed anchor with the benign one, but "
                "--defense_hm_fix_anchor never perturbs the anchor; give one of them"
            )

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> Terms:
        benign_outputs = self.adversary.benign_outputs(images)
        benign = benign_outputs["embeds"]
        unit = self.form(benign)
        mined = perturbed_triplets(self.source(unit, labels), self.anchor_mode)
        if len(mined) == 0:
            return self.skip(images.device)
        anchor, positive, negative = mined.T
        with torch.no_grad():
            context = self.loss_context(benign_outputs)
            loss_benign = self.criterion(benign, labels, mined=mined, **context)
            benign_hardness = hardness(unit[anchor], unit[positive], unit[negative], self.metric)
            target = self.destination_hardness(unit, labels, mined, benign_hardness)
        count = len(mined)
        if self.fix_anchor:
            perturbed = torch.cat([images[positive], images[negative]])
            fixed = unit[anchor]

            def objective(embeds: torch.Tensor) -> torch.Tensor:
                moved = hardness(fixed, embeds[:count], embeds[count:], self.metric)
                return self.objective(moved, target)
        else:
            perturbed = torch.cat([images[anchor], images[positive], images[negative]])

            def objective(embeds: torch.Tensor) -> torch.Tensor:
                a, p, n = embeds.split(count)
                return self.objective(hardness(a, p, n, self.metric), target)

        if self.same_miner:  # robrank: source == destination means no attack
            adversarial, iterations = perturbed, 0
        else:
            result = self.adversary.perturb(perturbed, objective, self.stop_tolerance)
            adversarial, iterations = result.adversarial, result.iterations

        terms: Terms = {}
        if self.ics:
            benign_anchor, benign_positive = self.form(
                self.forward(torch.cat([images[anchor], images[positive]]))["embeds"]
            ).split(count)
        if self.fix_anchor:
            outputs = concat_outputs(self.forward(images[anchor]), self.forward(adversarial))
        else:
            outputs = self.forward(adversarial)
        adv_anchor, adv_positive, adv_negative = outputs["embeds"].split(count)
        loss_adversarial = self.triplet_loss(
            adv_anchor, adv_positive, adv_negative, labels, mined, outputs.get("uncertainty")
        )
        loss = loss_adversarial
        if self.ics:
            ics = self.ics_lambda * intra_class_structure(
                benign_anchor, self.form(adv_anchor), benign_positive, self.metric, self.ics_margin
            )
            loss = loss + ics
            terms["loss_ics"] = ics.detach()
        self.update(loss)
        self.previous_loss = loss_adversarial.item()
        self.passes = iterations + 1
        with torch.no_grad():
            a, p, n = (self.form(e) for e in (adv_anchor, adv_positive, adv_negative))
            source_hardness = hardness(a, p, n, self.metric)
        return {
            "loss": loss.detach(),
            "loss_adversarial": loss_adversarial.detach(),
            "loss_benign": loss_benign,
            **terms,
            "hardness_benign": benign_hardness.mean(),
            "hardness_source": source_hardness.mean(),
            "hardness_destination": target.mean(),
            "pgd_iterations": torch.tensor(float(iterations)),
        }

    def destination_hardness(
        self,
        unit: torch.Tensor,
        labels: torch.Tensor,
        mined: torch.Tensor,
        benign_hardness: torch.Tensor,
    ) -> torch.Tensor:
        """H_D of every source triplet (T,), gradual adversary applied."""
        if self.destination is None:
            target = torch.full_like(benign_hardness, self.destination_value)
        else:
            target = hardness_by_anchor(self.destination(unit, labels), unit, mined,
                                        benign_hardness, self.metric)  # fmt: skip
        if self.gradual == "off":
            return target
        level = min(max(self.previous_loss, 0.0), self.u) / self.u
        if self.gradual == "boost":
            return target + (1.0 - level) * self.xi
        shape = {"linear": 1.0, "square": 2.0, "sqrt": 0.5}[self.gradual]
        return torch.full_like(benign_hardness, -self.gamma * level**shape)

    def objective(self, moved: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The PGD objective between the perturbed source hardness and H_D."""
        if self.objective_name == "et":
            return (moved - target).clamp(max=0).square().mean()
        if self.objective_name == "l2":
            return F.mse_loss(moved, target)
        return F.kl_div(moved.log_softmax(0), target.softmax(0), reduction="sum")

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "previous_loss": self.previous_loss}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.previous_loss = float(state["previous_loss"])


def intra_class_structure(
    anchor: torch.Tensor,
    adversarial_anchor: torch.Tensor,
    positive: torch.Tensor,
    metric: str,
    margin: float,
) -> torch.Tensor:
    """ICS (CVPR'22 §3.3): mean_i [d(a_i, ã_i) − d(a_i, p_i) + m]₊, embeddings in the metric's
    form: the perturbed anchor must stay closer to its benign self than the positive is."""
    return (
        (
            metric_distance(anchor, adversarial_anchor, metric)
            - metric_distance(anchor, positive, metric)
            + margin
        )
        .clamp_min(0)
        .mean()
    )


def hardness_by_anchor(
    destination: torch.Tensor,
    unit: torch.Tensor,
    mined: torch.Tensor,
    fallback: torch.Tensor,
    metric: str,
) -> torch.Tensor:
    """Per source triplet, the mean hardness of the destination triplets with its anchor
    (``fallback`` where there is none)."""
    values = hardness(unit[destination[:, 0]], unit[destination[:, 1]],
                      unit[destination[:, 2]], metric)  # fmt: skip
    size = len(unit)
    total = torch.zeros(size, device=unit.device).index_add_(0, destination[:, 0], values)
    count = torch.zeros(size, device=unit.device).index_add_(
        0, destination[:, 0], torch.ones_like(values)
    )
    anchors = mined[:, 0]
    return torch.where(count[anchors] > 0, total[anchors] / count[anchors].clamp_min(1), fallback)


def destination_constant(value: str) -> float | None:
    """The constant H_D of ``--defense_hm_destination``, or None when it names a miner."""
    try:
        return float(value)
    except ValueError:
        return None


def check_triplet_miner(key: str, flag: str) -> None:
    miner = batch_mining.MINERS.get(key) if key in batch_mining.MINERS else None
    if miner is None or miner.output != "triplets":
        valid = [k for k, m in batch_mining.MINERS.items() if m.output == "triplets"]
        raise ConfigError(
            f"{flag}: {key!r} is not a triplet miner; expected one of {', '.join(valid)}"
            + (" or a constant hardness" if flag == "--defense_hm_destination" else "")
        )
