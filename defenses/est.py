"""EST: Embedding-Shifted Triplet adversarial training (robustness.md §4.2)."""

from __future__ import annotations

import torch

from attacks.base import embedding_form
from defenses import DEFENSES
from defenses.adversary import AdversarialStep, metric_distance
from defenses.base import Terms


@DEFENSES.register("est")
class EmbeddingShiftedTriplet(AdversarialStep):
    """EST (Zhou et al., "Adversarial Ranking Attack and Defense", ECCV 2020; robrank's ``*d``
    models): every image of the batch is replaced by the ES adversary, which shifts its
    embedding as far as it can from the benign one,

        x̃_i = argmax_{‖r‖∞ ≤ ε} d(f(x_i + r), f(x_i) + 1e-7·u_i),   u_i uniform in {−1,0,1}^D

    (the offset avoids the zero gradient at r = 0, as robrank's ES), and the loss is trained on
    the adversarial embeddings in train mode, its miner mining on them:

        L_EST = L(f(x̃), y)

    d is ``--defense_metric``. Serves every loss (proxy losses included); with ``--idml`` the
    loss's introspective similarity uses the adversarial embeddings' uncertainties. Terms: ``loss``
    (= L_EST), ``loss_benign`` (the loss on the benign embeddings, eval mode, no gradient),
    ``embedding_shift`` (mean d(f(x̃), f(x)) of the train-mode embeddings), ``pgd_iterations``.
    """

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> Terms:
        benign_outputs = self.adversary.benign_outputs(images)
        benign = benign_outputs["embeds"]
        with torch.no_grad():
            loss_benign = self.criterion(benign, labels, **self.loss_context(benign_outputs))
        origin = embedding_form(benign, self.metric)
        offset = torch.randint(-1, 2, origin.shape, device=origin.device).to(origin.dtype)
        target = origin + 1e-7 * offset
        result = self.adversary.perturb(
            images, lambda embeds: -metric_distance(embeds, target, self.metric).sum()
        )
        outputs = self.forward(result.adversarial)
        loss = self.criterion(outputs["embeds"], labels, **self.loss_context(outputs))
        self.update(loss)
        self.passes = result.iterations + 1
        with torch.no_grad():
            shifted = embedding_form(outputs["embeds"], self.metric)
            shift = metric_distance(shifted, origin, self.metric).mean()
        return {
            "loss": loss.detach(),
            "loss_benign": loss_benign,
            "embedding_shift": shift,
            "pgd_iterations": torch.tensor(float(result.iterations)),
        }
