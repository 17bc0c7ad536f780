"""Evaluation metrics and the evaluator that computes them (``--evaluation_metrics``).

A key is ``name`` or ``name@arg`` (``e_recall@4``): ``name`` selects a registered
:class:`metrics.base.Metric`, which parses ``arg`` itself. :class:`Evaluator` computes every shared
input the requested metrics need (nearest neighbours, k-means) once per split, then each metric.
A new metric is one file: a ``Metric`` subclass registered with ``@METRICS.register("name")``;
every module of the package is imported, so nothing else needs editing.
"""

from __future__ import annotations

from metrics.base import Metric
from registry import Registry, import_components
from utilities.errors import ConfigError

METRICS = Registry("metric", "--evaluation_metrics")


def parse_metric_key(key: str) -> tuple[str, str | None]:
    """``"e_recall@4"`` -> ``("e_recall", "4")``; ``"nmi"`` -> ``("nmi", None)``."""
    name, at, arg = key.partition("@")
    return name, arg if at else None


def build_metrics(keys: list[str]) -> list[Metric]:
    """One :class:`Metric` per key, in order; ConfigError for an unknown name or bad ``@arg``."""
    metrics = []
    for key in keys:
        name, arg = parse_metric_key(key)
        if name not in METRICS:
            # "mAP@R" is meant as mAP_R: offer the key with "@" read as "_" too.
            message = METRICS.unknown_key_message(name, key.replace("@", "_"))
            raise ConfigError(f"{message} (in {key!r})")
        metrics.append(METRICS.get(name)(arg))
    return metrics


# Imported once METRICS and build_metrics exist: each module registers its metric on import.
import_components(__name__, __path__)
from metrics.engine import Evaluator

__all__ = ["METRICS", "Evaluator", "build_metrics", "parse_metric_key"]
