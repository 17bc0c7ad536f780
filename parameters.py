"""Command-line flags: one flat namespace shared by every component.

Flag names and defaults follow the Revisiting-DML reference (spec revisiting_dml.md §2), so users'
run lists keep working. Components declare their own flags (``--loss_<name>_<param>``,
``--miner_<name>_<param>``) next to their code; :func:`build_parser` gathers them into one
``--help``, grouped by package. Flags the reference declared but never read or never implemented
(``--evaltypes``, ``--data_sim_measure``...) are not accepted.

Dataset-appropriate defaults: a flag the user did not give takes the dataset's default where the
dataset declares one (``digits`` trains ``c2f2_normalize`` at lr 1e-3 for a few epochs), otherwise
the reference default shown in ``--help``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import architectures
import batch_mining
import criteria
import datasampler
import datasets
import defenses
import metrics
from defenses import adversary
from defenses.grammar import resolve_defense
from utilities import config_file, robrank_command, selection, warmup
from utilities.errors import ConfigError
from utilities.flag_types import (
    Range,
    nonnegative_float,
    nonnegative_int,
    open_fraction,
    positive_float,
    positive_int,
)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("step", "multistep", "steplr", "linear", "none")
DEFAULT_METRICS = ["e_recall@1", "e_recall@2", "e_recall@4", "nmi", "f1", "mAP_R"]


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to a flag's help unless the help already names its default, or
    the flag is a switch or has no default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.nargs == 0 or action.default is None:
            return text
        return super()._get_help_string(action) or text


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line and exits with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def optimization_parameters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("learning-rate schedule, warm-up, gradient clipping")
    group.add_argument(
        "--scheduler",
        default="step",
        choices=SCHEDULES,
        help="schedule of every optimizer of the run, stepped once per epoch: step or multistep "
        "(MultiStepLR at --tau by --gamma, the Revisiting-DML reference), steplr (StepLR: "
        "× --gamma every --lr_decay_step epochs, PA/IDML --lr-decay-step/--lr-decay-gamma, DADA "
        "'step'), linear (LinearLR from --lr_linear_start to --lr_linear_end of the rate over "
        "--lr_linear_length epochs), none",
    )
    group.add_argument(
        "--gamma", type=positive_float, default=0.3, help="decay factor of step/multistep/steplr"
    )
    group.add_argument(
        "--tau",
        type=positive_int,
        nargs="+",
        default=[1000],
        help="MultiStepLR milestones (epochs)",
    )
    group.add_argument(
        "--lr_decay_step", type=positive_int, default=10, help="StepLR period (epochs)"
    )
    group.add_argument(
        "--lr_linear_start", type=positive_float, default=1.0, help="LinearLR start factor"
    )
    group.add_argument(
        "--lr_linear_end", type=positive_float, default=0.01, help="LinearLR end factor"
    )
    group.add_argument(
        "--lr_linear_length", type=positive_int, default=20, help="LinearLR length (epochs)"
    )
    group.add_argument(
        "--scheduler_after_warmup",
        action="store_true",
        help="the schedules start stepping only after the warm-up epochs (--warmup_epochs and "
        "an adversarial loss's generator warm-up), as DADA; by default they step through it, "
        "as PA/IDML",
    )
    group.add_argument(
        "--grad_clip_value",
        type=nonnegative_float,
        default=0.0,
        help="clip every gradient value to [-v, v] before each step of the network's optimizer "
        "(network and loss parameters; PA/IDML: 10); 0 = off",
    )
    warmup.add_arguments(group)


def basic_training_parameters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training")
    group.add_argument(
        "--config",
        default=None,
        metavar="FILE.yaml",
        help="a DADA reference config (the layout of its configs/*.yaml): the reference's "
        "defaults, then the file's keys, then the flags given here",
    )
    group.add_argument("--dataset", default="digits", help="dataset key (default: bundled digits)")
    group.add_argument(
        "--use_tv_split", action="store_true", help="split a validation set off train"
    )
    group.add_argument(
        "--tv_split_by_samples",
        action="store_true",
        help="validation = a fraction of each class's samples (default: a fraction of the classes)",
    )
    group.add_argument(
        "--tv_split_perc", type=open_fraction, default=0.8, help="train fraction of the split"
    )
    group.add_argument(
        "--split_by_classes",
        action="store_true",
        help="digits/mnist/fashion: zero-shot split (classes 0-4 train, 5-9 test), not by samples",
    )
    group.add_argument(
        "--augmentation",
        default="base",
        choices=["base", "adv", "big", "red", "auto", "none"],
        help="training augmentation (dataset default for digits/mnist/fashion: none)",
    )
    group.add_argument("--lr", type=positive_float, default=1e-5, help="network learning rate")
    group.add_argument(
        "--fc_lr",
        type=Range(float, 0, also=(-1.0,)),
        default=-1,
        help="if >= 0, learning rate of the embedding head",
    )
    group.add_argument(
        "--decay", type=nonnegative_float, default=4e-4, help="weight decay of the network"
    )
    group.add_argument("--n_epochs", type=positive_int, default=150, help="number of epochs")
    group.add_argument(
        "--num_workers",
        "--kernels",
        dest="num_workers",
        type=nonnegative_int,
        default=min(6, os.cpu_count() or 1),
        help="DataLoader worker processes, alias --kernels (default: the reference's 6, or the "
        "number of CPU cores when fewer)",
    )
    group.add_argument("--bs", type=positive_int, default=112, help="batch size")
    group.add_argument("--seed", type=nonnegative_int, default=1, help="random seed")
    group.add_argument(
        "--optim",
        default="adam",
        choices=OPTIMIZERS,
        help="adam, adamw (decoupled weight decay: the PA/IDML recipe) or sgd (momentum 0.9)",
    )
    group.add_argument("--loss", default="margin", help="loss key (criteria/)")
    group.add_argument("--batch_mining", default="distance", help="batch miner key (batch_mining/)")
    group.add_argument(
        "--defense",
        default="none",
        help="training step (defenses/): none, est, act, hm, or robrank's model-name grammar "
        "[g](rh|hm)(kl|l2|et)<src><dst>[i], e.g. ghmetsmi",
    )
    group.add_argument("--embed_dim", type=positive_int, default=128, help="embedding dimension")
    group.add_argument(
        "--not_pretrained", action="store_true", help="random initialisation instead of ImageNet"
    )
    group.add_argument(
        "--pretrained_path", default=None, help="ImageNet weight file (default: torch hub cache)"
    )
    group.add_argument(
        "--arch",
        default="resnet50_frozen_normalize",
        help="backbone key plus suffixes _frozen, _normalize (dataset default for digits: "
        "c2f2_normalize)",
    )
    group.add_argument(
        "--no_train_metrics",
        action="store_true",
        help="do not evaluate the training set (eval transform) after each epoch",
    )
    group.add_argument(
        "--evaluation_metrics",
        nargs="+",
        default=DEFAULT_METRICS,
        help="metrics computed after each epoch on each split",
    )
    group.add_argument(
        "--evaluate_on_gpu",
        action="store_true",
        help="compute the metrics on the training device (GPU); by default embeddings move to "
        "the CPU for the metrics, as in the reference, keeping GPU memory for training",
    )
    selection.add_arguments(group)
    group.add_argument(
        "--storage_metrics",
        nargs="+",
        default=["e_recall@1"],
        help="a per-split checkpoint is written whenever one of these improves",
    )
    group.add_argument(
        "--gpu",
        type=nonnegative_int,
        nargs="+",
        default=[0],
        help="GPU index used when --device is auto",
    )
    group.add_argument(
        "--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N"
    )
    group.add_argument("--amp", action="store_true", help="automatic mixed precision")
    group.add_argument(
        "--resume", default=None, help="continue training from this checkpoint_last.pth"
    )
    group.add_argument(
        "--savename",
        default="group_plus_seed",
        help="run folder name (default: <group>_s<seed> with --log_online, else "
        "<DATASET>_<ARCH>_<time>)",
    )
    group.add_argument(
        "--source_path",
        default=os.path.join(os.getcwd(), "..", "..", "Datasets"),
        help="parent folder of the dataset folders",
    )
    group.add_argument(
        "--save_path",
        default=os.path.join(os.getcwd(), "Training_Results"),
        help="results root; the run folder is <save_path>/<dataset>/<savename>",
    )


def batch_creation_parameters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("batch creation")
    group.add_argument("--data_sampler", default="class_random", help="batch sampler key")
    group.add_argument(
        "--samples_per_class",
        type=positive_int,
        default=2,
        help="samples per drawn class (must divide --bs)",
    )


def defense_parameters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("adversarial training (every --defense but none)")
    adversary.add_arguments(group)
    group.add_argument(
        robrank_command.FLAG,
        dest="robrank_command",
        metavar="DATASET:MODEL:LOSS",
        default=None,
        help="a robrank command string (mnist:rc2f2p:ptripletN, cub:rres18ghmetsmi:ptripletN), "
        "translated into these flags and printed; flags given with it override the translation",
    )


def wandb_parameters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Weights & Biases")
    group.add_argument(
        "--log_online",
        action="store_true",
        help="also log to W&B (offline mode when no API key is configured)",
    )
    group.add_argument("--wandb_key", default=None, help="W&B API key (or set WANDB_API_KEY)")
    group.add_argument("--project", default="Sample_Project", help="W&B project")
    group.add_argument("--group", default="Sample_Group", help="W&B group; seeds share a group")


def build_parser(prog: str = "main.py") -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog=prog,
        description="Train a deep metric learning model.",
        formatter_class=DefaultsHelpFormatter,
    )
    basic_training_parameters(parser)
    optimization_parameters(parser)
    batch_creation_parameters(parser)
    defense_parameters(parser)
    wandb_parameters(parser)
    datasets.DATASETS.add_arguments(parser, "dataset-specific")
    architectures.add_arguments(parser)
    architectures.ARCHITECTURES.add_arguments(parser, "architecture-specific")
    datasampler.SAMPLERS.add_arguments(parser, "sampler-specific")
    batch_mining.MINERS.add_arguments(parser, "miner-specific")
    criteria.add_introspection_arguments(parser)
    criteria.CRITERIA.add_arguments(parser, "loss-specific")
    defenses.DEFENSES.add_arguments(parser, "defense-specific")
    return parser


def check_batch_composition(opt: argparse.Namespace) -> None:
    """A loss on mined tuples needs a positive and a negative in its batch: with a sampler of
    same-class groups, one group per batch (bs / samples_per_class = 1) has no negative."""
    if not criteria.CRITERIA.get(opt.loss).requires_batchminer:
        return
    if not datasampler.SAMPLERS.get(opt.data_sampler).groups_by_class:
        return
    if opt.bs // opt.samples_per_class < 2:
        raise ConfigError(
            f"--bs: a batch of {opt.bs} is one class (--samples_per_class "
            f"{opt.samples_per_class}): --loss {opt.loss} finds no negative in it; expected "
            f"--bs >= {2 * opt.samples_per_class}"
        )


def start_up_notes(opt: argparse.Namespace, explicit: set[str]) -> list[str]:
    """Lines for settings that run but probably not as meant."""
    notes = []
    loss = criteria.CRITERIA.get(opt.loss)
    if "batch_mining" in explicit and not loss.requires_batchminer:
        notes.append(
            f"note: --batch_mining {opt.batch_mining} is ignored: --loss {opt.loss} mines no tuples"
        )
    grouped = datasampler.SAMPLERS.get(opt.data_sampler).groups_by_class
    if loss.requires_batchminer and grouped and opt.samples_per_class == 1:
        notes.append(
            f"note: --samples_per_class 1: --loss {opt.loss} finds positives only in classes "
            "drawn twice for a batch; SPC-2 or more is the usual setting"
        )
    return notes


def explicit_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The destinations the command line set explicitly (as opposed to defaults)."""
    unset = object()
    probe = argparse.Namespace(
        **{a.dest: unset for a in parser._actions if a.dest is not argparse.SUPPRESS}
    )
    parser.parse_args(argv, namespace=probe)
    return {dest for dest, value in vars(probe).items() if value is not unset}


def format_value(value: object) -> str:
    """A parsed flag's value as it would be typed."""
    if isinstance(value, (list, tuple)):
        return " ".join(str(item) for item in value)
    return str(value)


def read_config(parser: argparse.ArgumentParser, argv: Sequence[str]) -> dict[str, object]:
    """The values of ``--config FILE`` (when given), installed as the parser's defaults so that
    flags on the command line override them."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--config", default=None)
    path = probe.parse_known_args(argv)[0].config
    if path is None:
        return {}
    values = config_file.config_values(path, parser)
    parser.set_defaults(**values)
    return values


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, set[str]]:
    """Parse, apply dataset defaults to flags not given, validate. Returns (opt, explicit flags)."""
    given = list(sys.argv[1:] if argv is None else argv)
    argv, translation = robrank_command.expand(given)
    parser = build_parser()
    from_file = read_config(parser, argv)
    opt = parser.parse_args(argv)
    explicit = explicit_flags(parser, argv) | set(from_file)
    if translation:
        translated = explicit_flags(parser, argv[: len(argv) - len(given)])
        kept = sorted(translated & explicit_flags(parser, given))
        shown = ", ".join(f"--{name} {format_value(getattr(opt, name))}" for name in kept)
        print(translation + (f" (given instead: {shown})" if kept else ""))
    datasets.DATASETS.get(opt.dataset)
    for name, value in datasets.dataset_defaults(opt.dataset).items():
        if name not in explicit:
            setattr(opt, name, value)
    resolve_defense(opt, explicit)
    validate(opt)
    for note in start_up_notes(opt, explicit):
        print(note, file=sys.stderr)
    return opt, explicit


def validate(opt: argparse.Namespace) -> None:
    """Fail before any data is loaded or a run folder made: unknown keys, impossible numbers, a
    miner the loss does not allow, a batch that cannot hold a positive and a negative."""
    if opt.bs % opt.samples_per_class:
        raise ConfigError(
            f"--bs: batch size {opt.bs} is not divisible by --samples_per_class "
            f"{opt.samples_per_class}"
        )
    architectures.parse_arch(opt.arch)
    criteria.CRITERIA.get(opt.loss)
    datasampler.SAMPLERS.get(opt.data_sampler)
    criteria.check_miner(opt)
    criteria.check_introspection(opt)
    check_batch_composition(opt)
    defenses.validate(opt)
    warmup.check_options(opt)
    selection.rule(opt)
    arrays = {m.key for m in metrics.build_metrics(opt.evaluation_metrics) if not m.scalar}
    missing = [m for m in opt.storage_metrics if m not in opt.evaluation_metrics]
    if missing:
        raise ConfigError(
            f"--storage_metrics: {', '.join(missing)} not among --evaluation_metrics "
            f"({' '.join(opt.evaluation_metrics)})"
        )
    stored_arrays = sorted(arrays.intersection(opt.storage_metrics))
    if stored_arrays:
        raise ConfigError(
            f"--storage_metrics: {', '.join(stored_arrays)} is an array, not a score; expected "
            "scalar metrics"
        )
