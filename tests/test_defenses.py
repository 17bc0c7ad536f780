"""Defenses (training steps): the ε-ball, what each adversary moves and keeps benign, the
hardness manipulation, the gradual adversary, ICS, every servable loss, and the step contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import architectures
import criteria
import defenses
import parameters
from datasets.digits import digit_images
from defenses.adversary import hardness, metric_distance, perturbed_triplets, triplet_losses
from defenses.hm import hardness_by_anchor, intra_class_structure
from utilities.errors import ConfigError
from utilities.optimization import build_optimizer
from utilities.precision import Precision

EPS = 77 / 255
TOLERANCE = 1e-6


def digits_batch(classes: int = 10, per_class: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """An SPC-``per_class`` batch of real digits (first samples of each class), in [0,1]."""
    images, labels = digit_images()
    index = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(classes)])
    batch = torch.from_numpy(images[index]).float().div(255).unsqueeze(1)
    return batch, torch.from_numpy(labels[index])


def make_step(*flags: str, seed: int = 0) -> defenses.TrainingStep:
    """The training step of ``flags`` (digits defaults: c2f2_normalize) on a fresh model."""
    opt, _ = parameters.parse_args(["--num_workers", "0", *flags])
    opt.n_classes = 10
    torch.manual_seed(seed)
    model = architectures.build(opt)
    criterion = criteria.build(opt)
    optimizer = build_optimizer(opt, model, criterion)
    return defenses.build(opt, model, criterion, optimizer, Precision(False, torch.device("cpu")))


class Recorder:
    """Wraps a miner (or any callable) and keeps what it returned."""

    def __init__(self, inner) -> None:
        self.inner, self.results = inner, []

    def __call__(self, *args, **kwargs):
        result = self.inner(*args, **kwargs)
        self.results.append(result)
        return result


def record_train_inputs(model: torch.nn.Module) -> list[torch.Tensor]:
    """The input of every train-mode forward pass of ``model`` (the outer step's images)."""
    seen: list[torch.Tensor] = []

    def hook(module, args):
        if module.training:
            seen.append(args[0].detach().clone())

    model.register_forward_pre_hook(hook)
    return seen


def assert_in_ball(adversarial: torch.Tensor, clean: torch.Tensor, eps: float) -> None:
    assert adversarial.shape == clean.shape
    assert (adversarial - clean).abs().max() <= eps + TOLERANCE
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert not torch.equal(adversarial, clean), "the adversary moved nothing"


TRIPLET_DEFENSE = ["--loss", "triplet", "--batch_mining", "anchor_random", "--defense_pgditer", "4"]


def test_est_trains_on_images_inside_the_ball():
    step = make_step("--defense", "est", "--defense_pgditer", "4", "--loss", "triplet")
    seen = record_train_inputs(step.model)
    modes: list[bool] = []
    step.model.register_forward_pre_hook(lambda module, _: modes.append(module.training))
    images, labels = digits_batch()
    terms = step(images, labels)
    # The benign pass and the 4 PGD passes in eval mode, the outer step in train mode.
    assert modes == [False] * 5 + [True] and step.model.training
    assert len(seen) == 1
    assert_in_ball(seen[0], images, EPS)
    assert terms["pgd_iterations"] == 4 and step.passes == 5
    assert terms["embedding_shift"] > 0


def test_act_keeps_the_anchor_benign_and_perturbs_p_and_n_inside_the_ball():
    step = make_step("--defense", "act", *TRIPLET_DEFENSE)
    step.criterion.miner = Recorder(step.criterion.miner)
    seen = record_train_inputs(step.model)
    images, labels = digits_batch()
    step(images, labels)
    mined = perturbed_triplets(step.criterion.miner.results[0], "pair")
    anchors, pairs = seen
    assert torch.equal(anchors, images[mined[:, 0]]), "ACT's anchors must stay benign"
    assert_in_ball(pairs, images[torch.cat([mined[:, 1], mined[:, 2]])], EPS)


@pytest.mark.parametrize("fix_anchor", [False, True], ids=["all-three", "fixed-anchor"])
def test_hm_perturbs_the_source_triplets_inside_the_ball(fix_anchor):
    flags = ["--defense_hm_fix_anchor"] if fix_anchor else []
    step = make_step("--defense", "hm", *TRIPLET_DEFENSE, *flags)
    step.source = Recorder(step.source)
    seen = record_train_inputs(step.model)
    images, labels = digits_batch()
    step(images, labels)
    a, p, n = perturbed_triplets(step.source.results[0], "pair").T
    if fix_anchor:
        anchors, moved = seen
        assert torch.equal(anchors, images[a]), "a fixed anchor must stay benign"
        assert_in_ball(moved, images[torch.cat([p, n])], EPS)
    else:
        (moved,) = seen
        assert_in_ball(moved, images[torch.cat([a, p, n])], EPS)


@pytest.mark.parametrize("objective", ["et", "l2"])
def test_hm_moves_the_source_hardness_toward_the_destination(objective):
    # A constant destination harder than every benign source triplet: H_D = 0.3.
    step = make_step(
        "--defense", "hm", *TRIPLET_DEFENSE, "--defense_hm_source", "anchor_random",
        "--defense_hm_destination", "0.3", "--defense_hm_objective", objective,
        "--defense_pgditer", "8", "--defense_eps", "0.05", "--defense_alpha", "0.01",
    )  # fmt: skip
    images, labels = digits_batch()
    terms = step(images, labels)
    assert terms["hardness_destination"] == pytest.approx(0.3)
    benign, moved = terms["hardness_benign"].item(), terms["hardness_source"].item()
    assert benign < 0.3
    assert moved > benign + 0.05, (benign, moved)
    assert abs(moved - 0.3) < abs(benign - 0.3)


def test_hm_kl_objective_matches_the_shape_of_the_destination():
    step = make_step("--defense", "hmklsh", *TRIPLET_DEFENSE)
    images, labels = digits_batch()
    terms = step(images, labels)
    assert all(torch.isfinite(value) for value in terms.values())
    moved, target = torch.tensor([0.1, -0.2, 0.3]), torch.tensor([0.3, -0.1, 0.0])
    kl = step.objective(moved, target)
    p = target.softmax(0)
    assert kl.item() == pytest.approx((p * (p.log() - moved.log_softmax(0))).sum().item())
    assert step.objective(target + 5.0, target).item() == pytest.approx(0.0, abs=1e-6)


def test_hm_same_source_and_destination_means_no_attack():
    step = make_step("--defense", "hm", *TRIPLET_DEFENSE, "--defense_hm_source", "semihard",
                     "--defense_hm_destination", "semihard")  # fmt: skip
    step.source = Recorder(step.source)
    seen = record_train_inputs(step.model)
    images, labels = digits_batch()
    terms = step(images, labels)
    a, p, n = perturbed_triplets(step.source.results[0], "pair").T
    assert terms["pgd_iterations"] == 0 and step.passes == 1
    assert torch.equal(seen[0], images[torch.cat([a, p, n])])


def test_gradual_adversary_reads_the_previous_steps_loss():
    step = make_step("--defense", "ghmetsm", *TRIPLET_DEFENSE)
    images, labels = digits_batch()
    first = step(images, labels)
    # Before any step the previous loss is robrank's 2.0: clipped to u = γ, H_D = −γ.
    assert first["hardness_destination"].item() == pytest.approx(-0.2)
    assert step.previous_loss == pytest.approx(first["loss_adversarial"].item())
    second = step(images, labels)
    level = min(max(first["loss_adversarial"].item(), 0.0), 0.2) / 0.2
    assert second["hardness_destination"].item() == pytest.approx(-0.2 * level, abs=1e-6)
    restored = make_step("--defense", "ghmetsm", *TRIPLET_DEFENSE)
    restored.load_state_dict(step.state_dict())
    assert restored.previous_loss == step.previous_loss


@pytest.mark.parametrize(
    ("gradual", "expected"),
    [("linear", -0.2 * 0.5), ("square", -0.2 * 0.25), ("sqrt", -0.2 * math.sqrt(0.5))],
)
def test_gradual_shapes(gradual, expected):
    step = make_step("--defense", "hm", *TRIPLET_DEFENSE, "--defense_hm_gradual", gradual)
    step.previous_loss = 0.1  # ℓ̄ = 0.1 / u = 0.5
    unit = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    mined = torch.tensor([[0, 1, 2], [2, 3, 4]])
    target = step.destination_hardness(unit, labels, mined, torch.zeros(2))
    assert target.tolist() == pytest.approx([expected] * 2)


def test_gradual_boost_adds_to_the_mined_destination():
    step = make_step("--defense", "hm", *TRIPLET_DEFENSE, "--defense_hm_gradual", "boost",
                     "--defense_hm_destination", "-0.1", "--defense_hm_xi", "0.1")  # fmt: skip
    step.previous_loss = 0.05  # ℓ̄ = 0.25: H_D = −0.1 + 0.75·0.1
    target = step.destination_hardness(torch.eye(3), torch.tensor([0, 0, 1]),
                                       torch.tensor([[0, 1, 2]]), torch.zeros(1))  # fmt: skip
    assert target.item() == pytest.approx(-0.1 + 0.075)


def test_destination_hardness_pairs_triplets_by_anchor():
    unit = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [0.8, 0.6], [0, 1], [-1, 0]]))
    destination = torch.tensor([[0, 1, 2], [0, 1, 3], [2, 1, 0]])
    mined = torch.tensor([[0, 1, 3], [1, 0, 2], [2, 1, 3]])
    fallback = torch.tensor([9.0, 9.0, 9.0])
    values = hardness_by_anchor(destination, unit, mined, fallback, "N")
    h = hardness(unit[destination[:, 0]], unit[destination[:, 1]], unit[destination[:, 2]], "N")
    expected = [((h[0] + h[1]) / 2).item(), 9.0, h[2].item()]  # anchor 1 has no destination
    assert values.tolist() == pytest.approx(expected)


def test_ics_equals_its_formula_on_hand_made_values():
    anchor = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    adversarial = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    positive = torch.tensor([[0.0, 1.0], [0.6, 0.8]])
    # Row 0: d(a,ã) = √0.8 = 0.894427, d(a,p) = √2 = 1.414214 → [0.894427 − 1.414214 + 0.6]₊
    # Row 1: d(a,ã) = 0, d(a,p) = √0.4 = 0.632456 → [0 − 0.632456 + 0.6]₊ = 0.
    expected = (max(math.sqrt(0.8) - math.sqrt(2) + 0.6, 0) + 0.0) / 2
    value = intra_class_structure(anchor, adversarial, positive, "N", 0.6)
    assert value.item() == pytest.approx(expected, abs=1e-6)
    assert intra_class_structure(anchor, adversarial, positive, "N", 0.0).item() == 0.0


def test_ics_term_is_added_with_its_weight():
    step = make_step("--defense", "ghmetsmi", *TRIPLET_DEFENSE, "--defense_ics_margin", "0.5",
                     "--defense_ics_lambda", "0.25")  # fmt: skip
    images, labels = digits_batch()
    terms = step(images, labels)
    assert terms["loss_ics"] > 0
    assert terms["loss"].item() == pytest.approx(
        terms["loss_adversarial"].item() + terms["loss_ics"].item(), rel=1e-6
    )


def test_metric_distance_forms():
    x, y = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 0.0]])
    assert metric_distance(x, y, "E").item() == pytest.approx(5.0)
    u, v = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert metric_distance(u, v, "C").item() == pytest.approx(1.0)
    assert metric_distance(u, v, "N").item() == pytest.approx(math.sqrt(2))


def test_pair_mode_keeps_one_triplet_per_positive_pair():
    mined = torch.tensor([[0, 1, 4], [1, 0, 5], [2, 3, 0], [3, 2, 1], [4, 4, 5]])
    assert perturbed_triplets(mined, "pair").tolist() == [[0, 1, 4], [2, 3, 0], [4, 4, 5]]
    assert torch.equal(perturbed_triplets(mined, "all"), mined)


SERVED = [("est", loss) for loss in criteria.CRITERIA] + [
    (defense, loss) for defense in ("act", "hm") for loss in triplet_losses()
]


@pytest.mark.parametrize(("defense", "loss"), SERVED, ids=[f"{d}-{loss}" for d, loss in SERVED])
def test_every_servable_loss_trains(defense, loss):
    miner = criteria.CRITERIA.get(loss)
    flags = ["--defense", defense, "--loss", loss, "--defense_pgditer", "1", "--decay", "0"]
    if miner.requires_batchminer:
        allowed = miner.allowed_miners
        flags += ["--batch_mining", "anchor_random" if "anchor_random" in allowed else allowed[0]]
    step = make_step(*flags)
    before = [p.detach().clone() for p in step.model.parameters()]
    images, labels = digits_batch()
    terms = step(images, labels)
    assert all(torch.isfinite(value) for value in terms.values()), terms
    assert step.passes == 2
    moved = [not torch.equal(b, p) for b, p in zip(before, step.model.parameters(), strict=True)]
    assert any(moved), "the step did not update the network"


@pytest.mark.parametrize("defense", ["act", "hm", "ghmetsmi"])
def test_unservable_loss_fails_at_start_up(defense):
    with pytest.raises(ConfigError) as error:
        parameters.parse_args(["--defense", defense, "--loss", "proxy_anchor"])
    message = str(error.value)
    assert "--loss proxy_anchor" in message and "triplet" in message and "margin" in message


def test_standard_step_is_the_default_and_reports_its_loss():
    step = make_step("--loss", "triplet", "--batch_mining", "semihard")
    assert step.registry_key == "none"
    images, labels = digits_batch()
    terms = step(images, labels)
    assert set(terms) == {"loss"} and step.passes == 1


def test_non_finite_loss_raises_before_updating():
    step = make_step("--defense", "est", "--defense_pgditer", "1", "--loss", "triplet")
    step.criterion.margin = float("nan")
    before = [p.detach().clone() for p in step.model.parameters()]
    with pytest.raises(defenses.base.NonFiniteLossError):
        step(*digits_batch())
    assert all(torch.equal(b, p) for b, p in zip(before, step.model.parameters(), strict=True))
