"""robrank's ``-C DATASET:MODEL:LOSS`` command strings, translated into our flags.

    python main.py -C mnist:rc2f2p:ptripletN      # ACT on MNIST, C2F2, triplet (metric N)
    python main.py -C cub:rres18ghmetsmi:ptripletN

MODEL is a backbone (rc2f2, rres18, rres50, ribn) plus a defense suffix: none, ``d`` (EST),
``df`` (EST with FGSM), ``p`` (ACT), ``pf`` (ACT with FGSM) or an HM grammar name
(:mod:`defenses.grammar`). LOSS is ``p[miner]{triplet,margin,contrast,snr,quad}{N,E,C}``:
the SPC-2 losses of robrank with miner letter none (spc2-random → ``anchor_random``), m
(semihard), s (softhard), d (distance, robrank's: no cutoffs), h (hard), D (distance with the
ρ = 0.15 switch → ``rho_distance``) and metric N (L2-normalised Euclidean), E (Euclidean) or C
(cosine; triplet only). The translation adds robrank's per-input-size training settings
(robustness.md §5.2, §10.1): 512-d embeddings, SPC-2 batches of 128 pairs (28×28) or 56 pairs
(224×224), Adam at 1e-3 / 1e-7 or 1e-5 / 4e-4 without schedule, frozen batch norm on the
224×224 backbones except the EST models whose reference trains it (rres18d, rres50d), and
16 or 150 of our epochs, which is robrank's 8 or 75: its SPC-2 epoch visits every image as an
anchor plus a random positive, twice the images of one of ours. The flags given after ``-C``
override the translation.
"""

from __future__ import annotations

import re

from defenses.grammar import hm_settings
from utilities.errors import ConfigError

FLAG = "-C"
DATASETS = {
    "mnist": "mnist",
    "fashion": "fashion",
    "cub": "cub200",
    "cars": "cars196",
    "sop": "online_products",
}
BACKBONES = {"rc2f2": "c2f2", "rres18": "resnet18", "rres50": "resnet50", "ribn": "bninception"}
ELSEWHERE = ("rlenet", "rres101", "rres152", "rmnas05", "rmnas10", "rmnas13", "reffb0", "reffb4",
             "rswint", "rswins", "rswinb", "rswinl")  # fmt: skip
TRAINS_BATCH_NORM = {"rres18d", "rres50d"}  # robrank's legacy is_advtrain EST models
SUFFIXES = {
    "": ["--defense", "none"],
    "d": ["--defense", "est"],
    "df": ["--defense", "est", "--defense_pgditer", "1"],
    "p": ["--defense", "act"],
    "pf": ["--defense", "act", "--defense_pgditer", "1"],
}
LOSS = re.compile(
    r"p(?P<miner>[msdhD]?)(?P<family>triplet|margin|contrast|snr|quad)(?P<metric>[NEC])"
)
MINERS = {
    "": ["--batch_mining", "anchor_random"],
    "m": ["--batch_mining", "semihard"],
    "s": ["--batch_mining", "softhard"],
    "d": ["--batch_mining", "distance", "--miner_distance_lower_cutoff", "0",
          "--miner_distance_no_upper_cutoff"],
    "h": ["--batch_mining", "hard"],
    "D": ["--batch_mining", "rho_distance", "--miner_rho_distance_cp", "0.15",
          "--miner_rho_distance_lower_cutoff", "0", "--miner_rho_distance_no_upper_cutoff"],
}  # fmt: skip
SMALL = {"n_epochs": "16", "bs": "256", "lr": "1e-3", "decay": "1e-7"}
LARGE = {"n_epochs": "150", "bs": "112", "lr": "1e-5", "decay": "4e-4", "augmentation": "red"}
COMMON = ["--samples_per_class", "2", "--data_sampler", "class_random", "--embed_dim", "512",
          "--optim", "adam", "--scheduler", "none", "--no_train_metrics",
          "--evaluation_metrics", "e_recall@1", "e_recall@2", "mAP_R", "nmi",
          "--storage_metrics", "e_recall@1"]  # fmt: skip


def translate(command: str) -> list[str]:
    """The flags of one ``DATASET:MODEL:LOSS`` string; ConfigError naming ``-C`` otherwise."""
    parts = command.split(":")
    if len(parts) != 3:
        raise ConfigError(
            f"{FLAG}: got {command!r}, expected DATASET:MODEL:LOSS (e.g. mnist:rc2f2p:ptripletN)"
        )
    dataset, model, loss = parts
    if dataset not in DATASETS:
        raise ConfigError(
            f"{FLAG}: unknown robrank dataset {dataset!r}; expected one of {', '.join(DATASETS)}"
        )
    backbone, defense = split_model(model)
    small = backbone == "rc2f2"
    loss_flags, metric = loss_arguments(loss, defense)
    suffixes = "" if small or model in TRAINS_BATCH_NORM else "_frozen"
    suffixes += "" if metric == "E" else "_normalize"
    defaults = SMALL if small else LARGE
    return [
        "--dataset", DATASETS[dataset],
        "--arch", BACKBONES[backbone] + suffixes,
        *(token for name, value in defaults.items() for token in (f"--{name}", value)),
        *COMMON,
        *loss_flags,
        "--defense_metric", metric,
        *defense,
    ]  # fmt: skip


def split_model(model: str) -> tuple[str, list[str]]:
    """(robrank backbone, the defense flags of its suffix)."""
    known = [b for b in (*BACKBONES, *ELSEWHERE) if model.startswith(b)]
    if not known:
        raise ConfigError(
            f"{FLAG}: unknown robrank model {model!r}; expected a backbone "
            f"({', '.join(BACKBONES)}) followed by a defense suffix"
        )
    backbone = max(known, key=len)
    if backbone not in BACKBONES:
        raise ConfigError(
            f"{FLAG}: robrank backbone {backbone!r} has no counterpart here; available: "
            f"{', '.join(BACKBONES)}"
        )
    suffix = model[len(backbone) :]
    if suffix in SUFFIXES:
        return backbone, list(SUFFIXES[suffix])
    if hm_settings(suffix) is not None:
        return backbone, ["--defense", suffix]
    raise ConfigError(
        f"{FLAG}: unknown defense suffix {suffix!r} of {model!r}; expected none, d (EST), df, "
        "p (ACT), pf or an HM name [g](rh|hm)(kl|l2|et)<src><dst>[i] such as ghmetsmi"
    )


def loss_arguments(loss: str, defense: list[str]) -> tuple[list[str], str]:
    """(the loss and miner flags of a robrank loss name, its metric letter)."""
    match = LOSS.fullmatch(loss)
    if match is None:
        raise ConfigError(
            f"{FLAG}: unsupported robrank loss {loss!r}; expected p[m|s|d|h|D]"
            "{triplet,margin,contrast,snr,quad}{N,E,C}, e.g. ptripletN"
        )
    family, metric, miner = match["family"], match["metric"], match["miner"]
    euclidean = metric == "E"
    if metric == "C" and family != "triplet":
        raise ConfigError(
            f"{FLAG}: {loss!r}: the cosine metric C is available for the triplet loss only; "
            f"use p{miner}{family}N or p{miner}{family}E"
        )
    margin = "1.0" if euclidean else "0.2"
    flags = {
        "triplet": ["--loss", "triplet", "--loss_triplet_margin", margin,
                    "--loss_triplet_distance", "cosine" if metric == "C" else "euclidean"],
        "margin": ["--loss", "margin", "--loss_margin_beta", "0.6", "--loss_margin_margin",
                   "0.2", "--loss_margin_beta_lr", "5e-4"],
        "contrast": ["--loss", "contrastive", "--loss_contrastive_pos_margin", "0",
                     "--loss_contrastive_neg_margin", "1.0"],
        "snr": ["--loss", "snr", "--loss_snr_margin", "0.2", "--loss_snr_reg_lambda", "0.005"],
        "quad": ["--loss", "quadruplet", "--loss_quadruplet_margin_alpha_1", margin,
                 "--loss_quadruplet_margin_alpha_2", "0.5" if euclidean else "0.1"],
    }[family]  # fmt: skip
    flags += MINERS[miner]
    if miner == "m":  # robrank's ACT mines semihard negatives with margin 1.0 for E and N
        act = defense[:2] == ["--defense", "act"]
        flags += ["--miner_semihard_margin", "1.0" if act or euclidean else "0.2"]
    return flags, metric


def expand(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` with the translation of its ``-C`` string in front (so the flags given after it
    win), and a line saying what it became; unchanged when there is no ``-C``."""
    commands = [argv[i + 1] for i, token in enumerate(argv[:-1]) if token == FLAG]
    if FLAG in argv and not commands:
        raise ConfigError(f"{FLAG}: expected DATASET:MODEL:LOSS after it")
    if not commands:
        return argv, None
    if len(commands) > 1:
        raise ConfigError(f"{FLAG}: given {len(commands)} times, expected once")
    flags = translate(commands[0])
    return [*flags, *argv], f"{FLAG} {commands[0]} -> {' '.join(flags)}"
