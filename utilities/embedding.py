"""Embed a dataset with a model and evaluate it: the per-epoch and ``eval.py`` evaluation path."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from utilities.precision import Precision


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside the block; its previous mode restored after it, also when
    the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def embed_dataset(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    precision: Precision,
    description: str = "embedding",
) -> torch.Tensor:
    """Embeddings (N×D float32, on ``device``) of the whole dataset, in dataset order."""
    return embed_outputs(
        model,
        dataset,
        ("embeds",),
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        precision=precision,
        description=description,
    )["embeds"]


@torch.no_grad()
def embed_outputs(
    model: nn.Module,
    dataset: Dataset,
    keys: Sequence[str],
    *,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    precision: Precision,
    description: str = "embedding",
) -> dict[str, torch.Tensor]:
    """``{key: N×… float32 on device}``: the model outputs ``keys`` (``"embeds"``, and e.g.
    ``"uncertainty"`` of an IDML model) of the whole dataset, in dataset order, in eval mode."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    chunks: dict[str, list[torch.Tensor]] = {key: [] for key in keys}
    with evaluating(model):
        for images, _, _ in tqdm(
            loader, desc=description, leave=False, dynamic_ncols=True, disable=None
        ):
            with precision.autocast():
                outputs = model(images.to(device, non_blocking=True))
            for key in keys:
                chunks[key].append(outputs[key].float())
    return {key: torch.cat(parts) for key, parts in chunks.items()}


def evaluate_dataset(
    evaluator: Any,
    model: nn.Module,
    dataset: Any,
    *,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    precision: Precision,
    name: str,
    metric_device: torch.device | None = None,
    with_arrays: bool = False,
) -> dict[str, Any]:
    """Metrics of one split; the query/gallery protocol when the dataset carries masks.

    The model runs on ``device``; the metrics on ``metric_device`` (default: ``device``).
    ``{key: float}`` of the scalar metrics; ``with_arrays``: array-valued ones too, as lists
    (``rho_spectrum@0``, for ``eval.py``'s JSON; the per-epoch logs take scalars only).
    """
    embeds = embed_dataset(
        model,
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        precision=precision,
        description=f"embedding {name}",
    )
    return score_embeddings(
        evaluator, embeds.to(metric_device or device), dataset, model, with_arrays=with_arrays
    )


def score_embeddings(
    evaluator: Any,
    embeds: torch.Tensor,
    dataset: Any,
    model: nn.Module,
    *,
    with_arrays: bool = False,
) -> dict[str, Any]:
    """The evaluator's metrics of ``dataset``'s embeddings (N×D, on the metrics' device), with
    the split's labels and query/gallery masks."""
    labels = torch.as_tensor(np.asarray(dataset.labels), device=embeds.device)
    return evaluator.compute(
        embeds,
        labels,
        query=dataset.query,
        gallery=dataset.gallery,
        model=model,
        dataset=dataset,
        with_arrays=with_arrays,
    )
