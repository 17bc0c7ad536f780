"""``--config FILE.yaml``: DADA's per-dataset configuration files (methods.md §B.3).

A file in the layout of the reference's ``configs/{cub200,cars,sop,inshop}.yaml``: a flat YAML
mapping of the reference's ``parameters.py`` keys (``batch_size``, ``lr_reduce_step``,
``d_dis_ratio``...). As in the reference, the file's keys override the reference's defaults
(:data:`REFERENCE_DEFAULTS`, its ``parameters.py`` values for the keys our flags name
differently, and the DADA loss flags' own defaults); flags given on the command line override
both. Each key maps to one of our flags (:data:`GENERAL_KEYS`, and ``criteria.dadaproxy``'s
``REFERENCE_KEYS`` for the loss's keys), and its value is checked by that flag's own type and
choices. Loading a file also turns on ``--scheduler_after_warmup`` and ``--no_train_metrics``,
which the reference's main loop always does.

Errors are one line naming the file and the key: a duplicate key (the reference's
``cub200.yaml`` sets ``n_epochs`` twice, 80 then 60, and PyYAML silently keeps 60; the DADA CUB
recipe in ``run_lists/`` says 60), an unknown key (with the closest known one), a value the flag
does not accept.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

from registry import closest_name
from utilities.errors import ConfigError

# Reference key → our destination, and the translation of values where they differ.
GENERAL_KEYS: dict[str, str] = {
    "dataset": "dataset",
    "arch": "arch",
    "embed_dim": "embed_dim",
    "n_epochs": "n_epochs",
    "batch_size": "bs",
    "samples_per_class": "samples_per_class",
    "data_sampler": "data_sampler",
    "lr": "lr",
    "decay": "decay",
    "optim": "optim",
    "scheduler": "scheduler",
    "lr_reduce_step": "lr_decay_step",
    "lr_reduce_rate": "gamma",
    "lr_reduce_multi_steps": "tau",
    "lr_linear_start": "lr_linear_start",
    "lr_linear_end": "lr_linear_end",
    "lr_linear_length": "lr_linear_length",
    "warmup": "warmup_epochs",
    "augmentation": "augmentation",
    "loss": "loss",
    "seed": "seed",
    "kernels": "num_workers",
    "evaluation_metrics": "evaluation_metrics",
    "storage_metrics": "storage_metrics",
    "source_path": "source_path",
    "save_path": "save_path",
    "gpu": "gpu",
}
SCHEDULER_NAMES = {"step": "steplr", "multi": "multistep", "linear": "linear", "none": "none"}
# The reference's parameters.py defaults of the keys above (its loss keys' defaults are the DADA
# flags' defaults). Its 'step' schedule is StepLR. Machine settings (kernels, paths, gpu) keep
# ours unless the file sets them.
REFERENCE_DEFAULTS: dict[str, Any] = {
    "dataset": "cub200",
    "arch": "resnet50_frozen_layernorm_double",
    "embed_dim": 512,
    "n_epochs": 50,
    "batch_size": 90,
    "samples_per_class": 2,
    "data_sampler": "class_random",
    "lr": 1e-4,
    "decay": 4e-4,
    "optim": "adam",
    "scheduler": "step",
    "lr_reduce_step": 5,
    "lr_reduce_rate": 0.5,
    "lr_reduce_multi_steps": [20, 45, 70],
    "lr_linear_start": 1.0,
    "lr_linear_end": 0.01,
    "lr_linear_length": 20,
    "warmup": 1,
    "augmentation": "base",
    "loss": "dadaproxy",
    "seed": 0,
    "evaluation_metrics": [*(f"e_recall@{k}" for k in (1, 2, 4, 8)), "nmi", "f1", "mAP_R"],
    "storage_metrics": ["e_recall@1"],
}
ALWAYS = {"scheduler_after_warmup": True, "no_train_metrics": True}


def reference_keys() -> dict[str, str]:
    """Every accepted key → our destination."""
    from criteria.dadaproxy import REFERENCE_KEYS

    return {**GENERAL_KEYS, **REFERENCE_KEYS, "store_improvements": ""}


def read_mapping(path: str) -> dict[str, Any]:
    """The file's top-level mapping; ConfigError for a missing file, bad YAML, a duplicate or
    non-string key, or anything but a mapping."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise ConfigError(
                        f"--config: {path} sets key {key!r} twice (lines {seen[key]} and "
                        f"{line}); expected each key once"
                    )
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    try:
        text = pathlib.Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--config: cannot read {path}: {error}") from None
    try:
        content = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as error:
        reason = " ".join(str(error).split())[:200]
        raise ConfigError(f"--config: {path} is not valid YAML ({reason})") from None
    if content is None:
        return {}
    if not isinstance(content, dict) or not all(isinstance(k, str) for k in content):
        raise ConfigError(
            f"--config: {path} holds a {type(content).__name__}, expected a mapping of "
            "reference parameter names to values (the layout of DADA's configs/*.yaml)"
        )
    return content


def config_values(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Destination → checked value for the reference defaults overridden by the file."""
    content = read_mapping(path)
    keys = reference_keys()
    for key in content:
        if key not in keys:
            close = closest_name(key, list(keys))
            hint = f"; did you mean {close!r}?" if close else ""
            raise ConfigError(
                f"--config: {path} has unknown key {key!r}{hint} Expected the reference's "
                "parameter names (methods.md §B.3)"
            )
    if content.get("store_improvements", True) is not True:
        raise ConfigError(
            f"--config: {path} sets store_improvements {content['store_improvements']!r}; "
            "expected true (a checkpoint is always written when a --storage_metrics value "
            "improves)"
        )
    actions = {action.dest: action for action in parser._actions}
    values: dict[str, Any] = dict(ALWAYS)
    for key, value in {**REFERENCE_DEFAULTS, **content}.items():
        if key == "store_improvements":
            continue
        if key == "scheduler":
            if value not in SCHEDULER_NAMES:
                raise ConfigError(
                    f"--config: {path} key 'scheduler': found {value!r}; expected one of "
                    f"{', '.join(SCHEDULER_NAMES)}"
                )
            value = SCHEDULER_NAMES[value]
        dest = keys[key]
        values[dest] = checked(actions[dest], value, f"--config: {path} key {key!r}")
    return values


def checked(action: argparse.Action, value: Any, where: str) -> Any:
    """``value`` converted and checked as the command line would (the flag's type, choices,
    nargs); ConfigError naming ``where``."""
    if action.nargs == 0:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: found {value!r}; expected true or false")
        return value
    many = action.nargs in ("+", "*")
    items = value if isinstance(value, list) and many else [value]
    if isinstance(value, list) and not many:
        raise ConfigError(f"{where}: found the list {value!r}; expected one value")
    converted = []
    for item in items:
        if isinstance(item, (dict, list)) or item is None:
            raise ConfigError(f"{where}: found {item!r}; expected a value for --{action.dest}")
        text = str(item).lower() if isinstance(item, bool) else str(item)
        try:
            result = action.type(text) if action.type is not None else text
        except (argparse.ArgumentTypeError, ValueError, TypeError) as error:
            raise ConfigError(f"{where}: found {item!r}; {error}") from None
        if action.choices is not None and result not in action.choices:
            raise ConfigError(
                f"{where}: found {item!r}; expected one of {', '.join(map(str, action.choices))}"
            )
        converted.append(result)
    return converted if many else converted[0]
