"""``--config``: DADA's per-dataset YAML configs, written here in the reference's key layout,
give the effective values of methods.md §B.3; duplicate, unknown and ill-typed keys are one-line
errors naming the key; flags on the command line override the file."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import pytest

import parameters
from criteria.dadaproxy import REFERENCE_KEYS
from tests.conftest import ROOT
from utilities.errors import ConfigError

# The reference's configs/*.yaml (Noahsark/DADA 726ee8b), key for key and in its order.
REFERENCE_CONFIGS = {
    "cub200": """# parameters for cub
dataset: "cub200"
pos_class_mix: true
batch_size: 90
n_epochs: 80
lr: 0.00012
fd2_bn: true
fc2_bn: true
n_epochs: 60
d_dis_ratio: 0.005
decay: 0.0001
dis_decay: 0.0004
loss_oproxy_pos_alpha: 40
loss_oproxy_neg_alpha: 100
lr_reduce_step: 4
lr_reduce_rate: 0.45
mix_alpha: 3
mix_beta: 0.5
oproxy_ratio: 0.0075
evaluation_metrics: ['e_recall@1', 'e_recall@2', 'e_recall@4', 'f1', 'mAP_R']
store_improvements: true""",
    "cars": """# parameters for cars
dataset: "cars196"
n_epochs: 60
fd2_bn: true
d_dis_ratio: 0.01
decay: 0.0001
augmentation: auto
lr: 0.00012
lr_reduce_step: 10
mix_alpha: 2
mix_beta: 1
oproxy_ratio: 0.0075
warmup: 5
evaluation_metrics: ['e_recall@1', 'e_recall@2', 'e_recall@4', 'f1', 'mAP_R']
store_improvements: true
""",
    "sop": """# for sop
dataset: "online_products"
n_epochs: 200
batch_size: 180
d_dis_ratio: 0.05
decay: 0.00005
lr: 0.00012
dis_decay: 0.0001
fc_fc1_dim: 1024
fc_fc2_dim: 8192
fd_fc1_dim: 128
loss_oproxy_neg_alpha: 200
loss_oproxy_pos_alpha: 100
lr_reduce_rate: 0.1
lr_reduce_step: 20
mix_alpha: 2
mix_beta: 5
oproxy_ratio: 0.03
pos_class_mix: true
fd2_bn: true
scheduler: "multi"
arch: resnet50_layernorm_double
evaluation_metrics: ['e_recall@1', 'e_recall@10', 'e_recall@100']
store_improvements: true""",
    "inshop": """# for inshop
dataset: "inshop"
n_epochs: 200
batch_size: 180
fd2_bn: true
fc2_bn: true
pos_class_mix: true
arch: resnet50_layernorm_double
d_dis_ratio: 0.01
decay: 0.0001
dis_decay: 0.00005
fc_fc2_dim: 4096
fd_fc1_dim: 512
loss_oproxy_neg_alpha: 200
loss_oproxy_pos_alpha: 40
lr: 0.00012
lr_reduce_rate: 0.25
lr_reduce_step: 40
oproxy_ratio: 0.0075
mix_alpha: 3
mix_beta: 3
warmup: 5
store_improvements: true
""",
}

# methods.md §B.3, one column per file: reference key -> effective value.
COMMON = {
    "embed_dim": 512, "samples_per_class": 2, "lr": 1.2e-4, "d_warmup": 1, "loss": "dadaproxy",
    "proxy_dim": 0, "loss_oproxy_pos_delta": 0.1, "loss_oproxy_neg_delta": -0.1,
    "dis_gamma": 1.0, "d_discrepancy_ratio": 0.5, "dis_mode": "nwd",
    "loss_adv_classifier_lr": 5e-4, "loss_adv_proxy_lr": 0.04, "dropout": 0.5, "g_step": 1,
    "d_step": 3, "mix_mode": "random", "shift_scale": 1.0, "normal": True, "seed": 0,
    "storage_metrics": ["e_recall@1"], "data_sampler": "class_random", "optim": "adam",
}  # fmt: skip
EFFECTIVE = {
    "cub200": {
        "dataset": "cub200", "arch": "resnet50_frozen_layernorm_double", "n_epochs": 60,
        "batch_size": 90, "decay": 1e-4, "scheduler": "steplr", "lr_reduce_step": 4,
        "lr_reduce_rate": 0.45, "warmup": 1, "augmentation": "base",
        "loss_oproxy_pos_alpha": 40, "loss_oproxy_neg_alpha": 100, "oproxy_ratio": 0.0075,
        "d_dis_ratio": 0.005, "dis_decay": 4e-4, "fd_fc1_dim": 512, "fc_fc1_dim": 512,
        "fc_fc2_dim": 128, "fd2_bn": True, "fc2_bn": True, "mix_alpha": 3, "mix_beta": 0.5,
        "pos_class_mix": True,
        "evaluation_metrics": ["e_recall@1", "e_recall@2", "e_recall@4", "f1", "mAP_R"],
    },
    "cars": {
        "dataset": "cars196", "arch": "resnet50_frozen_layernorm_double", "n_epochs": 60,
        "batch_size": 90, "decay": 1e-4, "scheduler": "steplr", "lr_reduce_step": 10,
        "lr_reduce_rate": 0.5, "warmup": 5, "augmentation": "auto",
        "loss_oproxy_pos_alpha": 32, "loss_oproxy_neg_alpha": 32, "oproxy_ratio": 0.0075,
        "d_dis_ratio": 0.01, "dis_decay": 1e-4, "fd_fc1_dim": 512, "fc_fc1_dim": 512,
        "fc_fc2_dim": 128, "fd2_bn": True, "fc2_bn": False, "mix_alpha": 2, "mix_beta": 1,
        "pos_class_mix": False,
        "evaluation_metrics": ["e_recall@1", "e_recall@2", "e_recall@4", "f1", "mAP_R"],
    },
    "sop": {
        "dataset": "online_products", "arch": "resnet50_layernorm_double", "n_epochs": 200,
        "batch_size": 180, "decay": 5e-5, "scheduler": "multistep",
        "lr_reduce_multi_steps": [20, 45, 70], "lr_reduce_rate": 0.1, "warmup": 1,
        "augmentation": "base", "loss_oproxy_pos_alpha": 100, "loss_oproxy_neg_alpha": 200,
        "oproxy_ratio": 0.03, "d_dis_ratio": 0.05, "dis_decay": 1e-4, "fd_fc1_dim": 128,
        "fc_fc1_dim": 1024, "fc_fc2_dim": 8192, "fd2_bn": True, "fc2_bn": False,
        "mix_alpha": 2, "mix_beta": 5, "pos_class_mix": True,
        "evaluation_metrics": ["e_recall@1", "e_recall@10", "e_recall@100"],
    },
    "inshop": {
        "dataset": "inshop", "arch": "resnet50_layernorm_double", "n_epochs": 200,
        "batch_size": 180, "decay": 1e-4, "scheduler": "steplr", "lr_reduce_step": 40,
        "lr_reduce_rate": 0.25, "warmup": 5, "augmentation": "base",
        "loss_oproxy_pos_alpha": 40, "loss_oproxy_neg_alpha": 200, "oproxy_ratio": 0.0075,
        "d_dis_ratio": 0.01, "dis_decay": 5e-5, "fd_fc1_dim": 512, "fc_fc1_dim": 512,
        "fc_fc2_dim": 4096, "fd2_bn": True, "fc2_bn": True, "mix_alpha": 3, "mix_beta": 3,
        "pos_class_mix": True,
    },
}  # fmt: skip
OURS = {"batch_size": "bs", "lr_reduce_step": "lr_decay_step", "lr_reduce_rate": "gamma",
        "lr_reduce_multi_steps": "tau", "warmup": "warmup_epochs"}  # fmt: skip


def parse(*argv: str):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return parameters.parse_args(list(argv))[0]


def value(opt, key: str):
    return getattr(opt, REFERENCE_KEYS.get(key) or OURS.get(key) or key)


def write(tmp_path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_reference_cub_config_fails_on_its_duplicate_key(tmp_path):
    path = write(tmp_path, REFERENCE_CONFIGS["cub200"])
    with pytest.raises(ConfigError, match=r"sets key 'n_epochs' twice \(lines 5 and 9\)"):
        parse("--config", path)


@pytest.mark.parametrize("name", list(EFFECTIVE))
def test_reference_configs_give_the_spec_effective_values(tmp_path, name):
    text = REFERENCE_CONFIGS[name]
    if name == "cub200":  # the duplicate written once, as the value PyYAML kept
        text = text.replace("n_epochs: 80\n", "")
    opt = parse("--config", write(tmp_path, text))
    for key, expected in {**COMMON, **EFFECTIVE[name]}.items():
        got = value(opt, key)
        assert got == pytest.approx(expected) if isinstance(expected, float) else got == expected, (
            key
        )
    assert opt.scheduler_after_warmup and opt.no_train_metrics


def test_our_shipped_configs_equal_the_reference_values(tmp_path):
    for ours, name in [("cub200", "cub200"), ("cars196", "cars"), ("online_products", "sop"),
                       ("inshop", "inshop")]:  # fmt: skip
        shipped = parse("--config", str(ROOT / "configs" / "dada" / f"{ours}.yaml"))
        text = REFERENCE_CONFIGS[name].replace("n_epochs: 80\n", "")
        reference = parse("--config", write(tmp_path, text, f"{name}.yaml"))
        differing = {k for k in vars(reference) if getattr(shipped, k) != getattr(reference, k)} - {
            "config",
            "evaluation_metrics",
        }
        assert not differing, (ours, differing)


def test_the_command_line_overrides_the_file(tmp_path):
    path = write(tmp_path, "lr: 0.00012\nd_dis_ratio: 0.005\nfd2_bn: true\n")
    opt = parse("--config", path, "--lr", "0.5", "--d_dis_ratio", "0.2")
    assert (opt.lr, value(opt, "d_dis_ratio"), value(opt, "fd2_bn")) == (0.5, 0.2, True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr_reduce_stp: 4\n", r"unknown key 'lr_reduce_stp'; did you mean 'lr_reduce_step'"),
        ("lr: fast\n", r"key 'lr': found 'fast'"),
        ("batch_size: -3\n", r"key 'batch_size': found -3"),
        ("scheduler: cosine\n", r"key 'scheduler': found 'cosine'; expected one of step"),
        ("fd2_bn: 3\n", r"key 'fd2_bn': found 3; expected true or false"),
        ("store_improvements: false\n", r"store_improvements False; expected true"),
        ("- lr\n", r"holds a list, expected a mapping"),
        ("lr: [0.1\n", r"is not valid YAML"),
    ],
)
def test_bad_files_are_one_line_errors_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        parse("--config", write(tmp_path, text))


def test_a_bad_config_exits_2_without_a_traceback(tmp_path):
    path = write(tmp_path, "n_epochs: 3\nn_epochs: 4\n")
    result = subprocess.run(
        [sys.executable, "main.py", "--config", path], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "'n_epochs' twice" in result.stderr
