"""Embedding networks, selected with `--arch BASE[_frozen][_normalize][_double][_layernorm]`
(suffixes in any order, each at most once).

`ARCHITECTURES` maps each base key to an `EmbeddingModel` subclass; `parse_arch` splits `--arch`
into an `ArchName` (base key and suffixes), `input_spec` tells the datasets what input the model
wants without building it, `add_arguments` declares the flags every architecture reads (the IDML
uncertainty head) and `build(opt)` creates the model.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass

from architectures.input_spec import InputSpec
from registry import Registry, closest_name, import_components
from utilities.errors import ConfigError

ARCHITECTURES = Registry("architecture", "--arch")
# frozen: BatchNorm statistics and mode frozen; normalize: L2-normalised embedding; double: GAP +
# GMP pooling (IDML, DADA); layernorm: LayerNorm without affine on the embedding (DADA).
SUFFIXES = ("frozen", "normalize", "double", "layernorm")
UNCERTAINTY_ACTIVATIONS = ("none", "relu")

import_components(__name__, __path__)
from architectures.base import EmbeddingModel


@dataclass(frozen=True)
class ArchName:
    """`--arch` parsed: the registered base key and which suffixes it carries."""

    base: str
    frozen: bool = False
    normalize: bool = False
    double: bool = False
    layernorm: bool = False


def allowed_suffixes(base: str) -> tuple[str, ...]:
    """The suffixes `base` accepts: all but `double` when the backbone has no pooling step."""
    if ARCHITECTURES.get(base).pooling_module is None:
        return tuple(s for s in SUFFIXES if s != "double")
    return SUFFIXES


def valid_arch_names() -> list[str]:
    """Every accepted `--arch` value: each base key with each ordered subset of its suffixes."""
    names = []
    for base in ARCHITECTURES:
        suffixes = allowed_suffixes(base)
        for count in range(len(suffixes) + 1):
            for chosen in itertools.permutations(suffixes, count):
                names.append("_".join((base, *chosen)))
    return names


def parse_arch(name: str) -> ArchName:
    """`--arch` → `ArchName`; e.g. `resnet50_frozen_layernorm_double`.

    The base is the longest registered key `name` starts with; what follows must be suffixes of
    `SUFFIXES`, each at most once, in any order. Anything else raises ConfigError naming the
    closest valid value; `_double` on a backbone without a pooling step (`c2f2`) raises
    ConfigError saying so.
    """
    bases = [key for key in ARCHITECTURES if name == key or name.startswith(key + "_")]
    close, problem = None, "unknown architecture"
    if bases:
        base = max(bases, key=len)
        suffixes = name[len(base) + 1 :].split("_") if name != base else []
        if all(s in SUFFIXES for s in suffixes):
            if len(set(suffixes)) == len(suffixes):
                check_pooling(name, base, suffixes)
                return ArchName(base, **{s: s in suffixes for s in SUFFIXES})
            once = [s for s in dict.fromkeys(suffixes) if s in allowed_suffixes(base)]
            close, problem = "_".join((base, *once)), "a suffix repeated in architecture"
    close = close or closest_name(name, valid_arch_names())
    hint = f"; did you mean {close!r}?" if close else ""
    raise ConfigError(
        f"--arch: {problem} {name!r}{hint} Expected one of "
        f"{', '.join(ARCHITECTURES.keys())} followed by any of the suffixes "
        f"{', '.join('_' + s for s in SUFFIXES)} (each at most once, any order)"
    )


def check_pooling(name: str, base: str, suffixes: list[str]) -> None:
    """ConfigError for `_double` on a backbone without a pooling step to replace (`c2f2`)."""
    if "double" in suffixes and "double" not in allowed_suffixes(base):
        pooling = [key for key in ARCHITECTURES if "double" in allowed_suffixes(key)]
        raise ConfigError(
            f"--arch: {name!r} asks for GAP + GMP pooling (_double), but {base} has no global "
            f"pooling step (it flattens its feature map); expected {base} without _double, or "
            f"_double on one of {', '.join(pooling)}"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every architecture reads: the IDML uncertainty head (methods.md §A.1, §A.2)."""
    group = parser.add_argument_group("architecture (every --arch)")
    group.add_argument(
        "--idml",
        action="store_true",
        help="add the IDML uncertainty head (Wang et al., 'Introspective Deep Metric Learning', "
        "TPAMI 2023): model.uncertainty_head = Linear(F, embed_dim) on the same pooled features "
        "as last_linear; the forward then also returns 'uncertainty' (B×embed_dim, never "
        "normalised by the model)",
    )
    group.add_argument(
        "--idml_uncertainty_activation",
        choices=UNCERTAINTY_ACTIVATIONS,
        default="none",
        help="activation of the uncertainty head with --idml: none (IDML's metric-learning "
        "code) or relu (its classification variant)",
    )


def input_spec(arch: str) -> InputSpec:
    """The input contract (size, channels, normalisation) of `--arch`, without building it."""
    return ARCHITECTURES.get(parse_arch(arch).base).input_spec


def build(opt: argparse.Namespace) -> EmbeddingModel:
    """The model `opt.arch` with an `opt.embed_dim` head.

    Reads `--arch`, `--embed_dim`, `--not_pretrained`, `--pretrained_path`, `--idml` and
    `--idml_uncertainty_activation`. The last two may be absent (options of a checkpoint written
    before they existed): no uncertainty head.
    """
    name = parse_arch(opt.arch)
    return ARCHITECTURES.get(name.base)(
        embed_dim=opt.embed_dim,
        frozen=name.frozen,
        normalize=name.normalize,
        double=name.double,
        layernorm=name.layernorm,
        pretrained=not opt.not_pretrained,
        pretrained_path=opt.pretrained_path,
        idml=getattr(opt, "idml", False),
        uncertainty_activation=getattr(opt, "idml_uncertainty_activation", "none"),
    )
