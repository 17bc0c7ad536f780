"""IDML and DADA end to end: they train and evaluate on digits and on generated dataset folders,
and a run stopped after an epoch and resumed ends exactly like an uninterrupted one (the DADA
discriminators, their optimizer and every schedule included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import main
from tests.test_end_to_end import train_and_evaluate
from utilities.checkpoint import load_checkpoint

FAST = ["--num_workers", "0", "--no_train_metrics", "--evaluation_metrics", "e_recall@1", "mAP_R",
        "nmi", "--savename", "run"]  # fmt: skip
RECIPES = {
    "dada": ["--loss", "dadaproxy", "--scheduler", "steplr", "--lr_decay_step", "1",
             "--scheduler_after_warmup"],
    "idml_pa": ["--loss", "proxy_anchor", "--idml", "--input_mixup", "--warmup_epochs", "1",
                "--optim", "adamw", "--scheduler", "steplr", "--lr_decay_step", "1",
                "--grad_clip_value", "10"],
    "idml_est": ["--loss", "proxy_anchor", "--idml", "--defense", "est", "--defense_pgditer",
                 "2", "--loss_idml_normalize_uncertainty"],
}  # fmt: skip


def run(tmp_path, name: str, *flags: str) -> dict:
    main.train([*FAST, "--save_path", str(tmp_path / name), *flags])
    return load_checkpoint(tmp_path / name / "digits" / "run" / "checkpoint_last.pth", "--resume")


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_resumed_run_ends_like_an_uninterrupted_one(tmp_path, recipe):
    flags = [*RECIPES[recipe], "--seed", "5"]
    straight = run(tmp_path, "straight", *flags, "--n_epochs", "2")
    first = run(tmp_path, "resumed", *flags, "--n_epochs", "1")
    checkpoint = tmp_path / "resumed" / "digits" / "run" / "checkpoint_last.pth"
    main.train(["--resume", str(checkpoint), "--n_epochs", "2", "--num_workers", "0"])
    resumed = load_checkpoint(checkpoint, "--resume")
    assert first["epoch"] == 1 and resumed["epoch"] == straight["epoch"] == 2
    for split, table in straight["history"].items():
        for column, values in table.items():
            if column != "time":  # NaN (a generator warm-up epoch's loss) equals NaN here
                np.testing.assert_array_equal(resumed["history"][split][column], values)
    for part in ("model", "criterion"):
        for key, tensor in straight[part].items():
            assert torch.equal(resumed[part][key], tensor), (part, key)
    assert resumed["scheduler"] == straight["scheduler"]
    if recipe == "dada":
        step_state = resumed["training_step"]
        assert "discriminator_optimizer" in step_state
        assert len(resumed["scheduler"]["schedules"]) == 2  # network + discriminators
        assert any(k.startswith(("domain", "category")) or "discriminator" in k
                   for k in resumed["criterion"])  # fmt: skip
        train = straight["history"]["Train"]
        assert train["loss"][0] != train["loss"][0]  # NaN: the generator warm-up epoch
        assert all(v == v for v in train["loss_discriminator"])
    if recipe.startswith("idml"):
        assert any(k.startswith("uncertainty_head") for k in resumed["model"])


@pytest.mark.slow
def test_dada_trains_and_evaluates_on_an_image_folder_layout(tmp_path):
    train_and_evaluate(tmp_path, "cub200", "resnet18_frozen_layernorm_double", "--loss",
                       "dadaproxy", "--loss_dadaproxy_d_warmup", "0", "--augmentation", "base",
                       "--scheduler_after_warmup")  # fmt: skip


def test_idml_trains_and_evaluates_on_an_image_folder_layout(tmp_path):
    train_and_evaluate(tmp_path, "inshop", "c2f2_normalize", "--loss", "proxy_anchor", "--idml",
                       "--input_mixup")  # fmt: skip


@pytest.mark.slow
def test_methods_benchmark_prints_a_row_per_method(capsys):
    from benchmarks import methods_digits

    assert methods_digits.main_cli(["--epochs", "1", "--seeds", "0", "--methods", "PA",
                                    "DADA-PA"]) == 0  # fmt: skip
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| PA", "| DADA-PA"]
