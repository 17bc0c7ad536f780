"""ACT: Anti-Collapse Triplet adversarial training (robustness.md §4.3)."""

from __future__ import annotations

import torch

from defenses import DEFENSES
from defenses.adversary import TripletDefense, concat_outputs, metric_distance, perturbed_triplets
from defenses.base import Terms


@DEFENSES.register("act")
class AntiCollapseTriplet(TripletDefense):
    """ACT (Zhou et al., "Adversarial Attack and Defense in Deep Ranking", T-PAMI 2024,
    arXiv 2106.03614; robrank's ``*p`` models).

    Triplets (a, p, n) are mined on the benign embeddings f(x) (eval mode) by the loss's own
    miner (``--defense_anchors`` keeps one per positive pair). The positive and the negative
    are perturbed jointly to collapse onto each other:

        [r_p*, r_n*] = argmin_{‖r‖∞ ≤ ε} mean_i d(f(p_i + r_p,i), f(n_i + r_n,i))

    and the loss is trained on the benign anchor (with gradient, never perturbed: no
    "misleading gradients") and the collapsed pair, in train mode:

        L_ACT = L(f(a), f(p̃), f(ñ))

    d is ``--defense_metric`` (N: Euclidean on L2-normalised embeddings). Terms: ``loss``
    (= L_ACT), ``loss_benign`` (the loss on the benign triplets, no gradient),
    ``collapse_distance`` (mean d(f(p̃), f(ñ)) of the train-mode embeddings), ``pgd_iterations``.
    Serves every loss trained on mined triplets; with ``--idml`` the loss's introspective
    similarity uses the uncertainties of the three blocks.
    """

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> Terms:
        benign_outputs = self.adversary.benign_outputs(images)
        benign = benign_outputs["embeds"]
        mined = perturbed_triplets(self.criterion.miner(benign, labels), self.anchor_mode)
        if len(mined) == 0:
            return self.skip(images.device)
        anchor, positive, negative = mined.T
        with torch.no_grad():
            context = self.loss_context(benign_outputs)
            loss_benign = self.criterion(benign, labels, mined=mined, **context)
        count = len(mined)
        result = self.adversary.perturb(
            torch.cat([images[positive], images[negative]]),
            lambda embeds: metric_distance(embeds[:count], embeds[count:], self.metric).mean(),
        )
        outputs = concat_outputs(self.forward(images[anchor]), self.forward(result.adversarial))
        anchor_embeds, positive_embeds, negative_embeds = outputs["embeds"].split(count)
        uncertainty = outputs.get("uncertainty")
        loss = self.triplet_loss(
            anchor_embeds, positive_embeds, negative_embeds, labels, mined, uncertainty
        )
        self.update(loss)
        self.passes = result.iterations + 1
        with torch.no_grad():
            collapse = metric_distance(
                self.form(positive_embeds), self.form(negative_embeds), self.metric
            ).mean()
        return {
            "loss": loss.detach(),
            "loss_benign": loss_benign,
            "collapse_distance": collapse,
            "pgd_iterations": torch.tensor(float(result.iterations)),
        }
