"""Embedding networks, selected with `--arch BASE[_frozen][_normalize]` (suffixes in any order).

`ARCHITECTURES` maps each base key to an `EmbeddingModel` subclass; `parse_arch` splits `--arch`
into base key and suffixes, `input_spec` tells the datasets what input the model wants without
building it, and `build(opt)` creates the model.
"""

from __future__ import annotations

import argparse
import itertools

from architectures.input_spec import InputSpec
from registry import Registry, closest_name, import_components
from utilities.errors import ConfigError

ARCHITECTURES = Registry("architecture", "--arch")
SUFFIXES = ("frozen", "normalize")

import_components(__name__, __path__)
from architectures.base import EmbeddingModel


def valid_arch_names() -> list[str]:
    """Every accepted `--arch` value: each base key with each ordered subset of the suffixes."""
    names = []
    for base in ARCHITECTURES:
        for count in range(len(SUFFIXES) + 1):
            for chosen in itertools.permutations(SUFFIXES, count):
                names.append("_".join((base, *chosen)))
    return names


def parse_arch(name: str) -> tuple[str, bool, bool]:
    """`--arch` → (base key, frozen, normalize); e.g. `bninception_normalize_frozen`.

    The base is the longest registered key `name` starts with; what follows must be `_frozen`
    and/or `_normalize`, each at most once, in any order. Anything else raises ConfigError
    naming the closest valid value.
    """
    bases = [key for key in ARCHITECTURES if name == key or name.startswith(key + "_")]
    if bases:
        base = max(bases, key=len)
        suffixes = name[len(base) + 1 :].split("_") if name != base else []
        if all(s in SUFFIXES for s in suffixes) and len(set(suffixes)) == len(suffixes):
            return base, "frozen" in suffixes, "normalize" in suffixes
    close = closest_name(name, valid_arch_names())
    hint = f"; did you mean {close!r}?" if close else ""
    raise ConfigError(
        f"--arch: unknown architecture {name!r}{hint} Expected one of "
        f"{', '.join(ARCHITECTURES.keys())} followed by any of the suffixes "
        f"{', '.join('_' + s for s in SUFFIXES)} (each at most once, any order)"
    )


def input_spec(arch: str) -> InputSpec:
    """The input contract (size, channels, normalisation) of `--arch`, without building it."""
    return ARCHITECTURES.get(parse_arch(arch)[0]).input_spec


def build(opt: argparse.Namespace) -> EmbeddingModel:
    """The model `opt.arch` with an `opt.embed_dim` head.

    Reads `--arch`, `--embed_dim`, `--not_pretrained` and `--pretrained_path`.
    """
    base, frozen, normalize = parse_arch(opt.arch)
    return ARCHITECTURES.get(base)(
        embed_dim=opt.embed_dim,
        frozen=frozen,
        normalize=normalize,
        pretrained=not opt.not_pretrained,
        pretrained_path=opt.pretrained_path,
    )
