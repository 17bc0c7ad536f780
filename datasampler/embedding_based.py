"""Shared machinery of the samplers that choose batches from training-set embeddings.

No component is registered here. ``main.py`` calls ``set_embeddings`` at the start of every epoch
(for samplers with ``needs_embeddings``) with the current model's embeddings of the whole training
set (evaluation transforms, dataset order); batches of that epoch are then selected from them.
The reference instead embedded once before training and overwrote the stored rows with each
step's train-mode embeddings; re-embedding per epoch keeps the sampler a pure function of
(model, generator state), so resuming from a checkpoint reproduces the batches exactly.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from datasampler.base import BatchSampler
from utilities.errors import ConfigError
from utilities.flag_types import Range, positive_int


def add_flag_once(group: argparse._ArgumentGroup, flag: str, **kwargs: Any) -> None:
    """Declare ``flag`` unless another sampler sharing it already has (one flat namespace)."""
    if flag not in group._option_string_actions:
        group.add_argument(flag, **kwargs)


def add_big_batch_flag(group: argparse._ArgumentGroup) -> None:
    add_flag_once(
        group,
        "--data_batchmatch_bigbs",
        type=positive_int,
        default=512,
        help="big-batch size the embedding-based samplers select each batch from "
        "(capped at the training-set size)",
    )


def add_lowproj_flag(group: argparse._ArgumentGroup) -> None:
    add_flag_once(
        group,
        "--data_sampler_lowproj_dim",
        type=Range(int, 1, also=(-1,)),
        default=-1,
        help="if > 0, embedding-based samplers select on a random projection to this many "
        "dimensions",
    )


class EmbeddingSampler(BatchSampler):
    """Base class of the storage samplers: ``len(labels) // bs`` batches per epoch, each selected
    independently from a fresh random big batch of the stored embeddings.

    Every selected sample is followed by ``--samples_per_class`` − 1 further uniform draws (with
    replacement) from its class, so batches keep the SPC-N structure of ``class_random``.
    """

    needs_embeddings = True

    def __init__(self, opt: argparse.Namespace, labels: np.ndarray) -> None:
        super().__init__(opt, labels)
        self.samples_per_class = int(opt.samples_per_class)
        self.n_draws = self.bs // self.samples_per_class
        self.big_bs = min(int(opt.data_batchmatch_bigbs), len(self.labels))
        if self.big_bs < self.n_draws:
            raise ConfigError(
                f"--data_batchmatch_bigbs: got {opt.data_batchmatch_bigbs}, expected at least "
                f"--bs / --samples_per_class = {self.n_draws}"
            )
        self.lowproj_dim = int(opt.data_sampler_lowproj_dim)
        self.embeddings: torch.Tensor | None = None

    def set_embeddings(self, embeddings: torch.Tensor) -> None:
        """Store the N×D training-set embeddings (dataset order) the next batches come from."""
        if embeddings.ndim != 2 or len(embeddings) != len(self.labels):
            raise ValueError(
                f"--data_sampler {self.registry_key}: expected {len(self.labels)}×D training-set "
                f"embeddings, got shape {tuple(embeddings.shape)}"
            )
        self.embeddings = embeddings.detach().float()

    def stored(self) -> torch.Tensor:
        if self.embeddings is None:
            raise RuntimeError(
                f"--data_sampler {self.registry_key}: no training-set embeddings; call "
                "set_embeddings(...) before iterating (main.py does at the start of each epoch)"
            )
        return self.embeddings

    def big_batch(self) -> np.ndarray:
        """``--data_batchmatch_bigbs`` distinct dataset indices, uniformly at random."""
        return self.rng.choice(len(self.labels), size=self.big_bs, replace=False)

    def random_projection(self, embeds: torch.Tensor) -> torch.Tensor:
        """Project to ``--data_sampler_lowproj_dim`` dimensions (when > 0 and smaller than D) with
        a fresh Gaussian matrix from the sampler's generator."""
        dim = self.lowproj_dim
        if dim <= 0 or dim >= embeds.shape[1]:
            return embeds
        matrix = self.rng.standard_normal((embeds.shape[1], dim)) / np.sqrt(dim)
        return embeds @ torch.as_tensor(matrix, dtype=embeds.dtype, device=embeds.device)

    def fill_classes(self, selected: np.ndarray) -> list[int]:
        """Each selected dataset index followed by spc − 1 random members of its class."""
        classes = self.class_of_sample[selected]
        fill = self.random_members(classes, self.samples_per_class - 1)
        return np.concatenate([selected[:, None], fill], axis=1).reshape(-1).tolist()

    def choice(self, log_weights: np.ndarray) -> int:
        """One index drawn with probability ∝ exp(log_weights) (−inf: never), from the generator."""
        weights = np.exp(log_weights - log_weights.max())
        return int(self.rng.choice(len(weights), p=weights / weights.sum()))


def squared_distances(embeds: torch.Tensor) -> np.ndarray:
    """The N×N matrix of squared Euclidean distances, in float64 on the CPU.

    The greedy selections loop over it with NumPy: hundreds of tiny steps, each far cheaper on a
    host array than as a device (or thread-pool) launch."""
    x = embeds.double()
    norms = x.pow(2).sum(1)
    return (norms[:, None] + norms[None, :] - 2 * x @ x.T).clamp_min(0).cpu().numpy()


def add_ncomps_flag(group: argparse._ArgumentGroup) -> None:
    add_flag_once(
        group,
        "--data_batchmatch_ncomps",
        type=positive_int,
        default=10,
        help="candidate batches the batch-match samplers compare with the big batch",
    )


class BatchMatchSampler(EmbeddingSampler):
    """Base class of the batch-match samplers: per batch, an SPC-structured big batch (big_bs/spc
    random class draws × spc samples, as ``class_random``) and ``--data_batchmatch_ncomps``
    candidate batches, each bs/spc of its class groups chosen without replacement; the candidate
    whose embedding statistics best match the big batch's (lowest :meth:`costs`) is the batch.
    With ``--data_sampler_lowproj_dim`` > 0 the statistics are computed on a random projection of
    the big batch (one matrix per batch), as in the reference.
    """

    def __init__(self, opt: argparse.Namespace, labels: np.ndarray) -> None:
        super().__init__(opt, labels)
        self.n_candidates = int(opt.data_batchmatch_ncomps)
        if self.n_candidates < 1:
            raise ConfigError(f"--data_batchmatch_ncomps: got {self.n_candidates}, expected >= 1")
        if int(opt.data_batchmatch_bigbs) < self.bs:
            raise ConfigError(
                f"--data_batchmatch_bigbs: got {opt.data_batchmatch_bigbs}, expected at least "
                f"--bs {self.bs} for --data_sampler {self.registry_key}"
            )
        self.n_groups = int(opt.data_batchmatch_bigbs) // self.samples_per_class

    def draw_batch(self) -> list[int]:
        classes = self.rng.integers(0, len(self.class_size), size=self.n_groups)
        big = self.random_members(classes, self.samples_per_class)  # groups × spc
        chosen_groups = np.argsort(self.rng.random((self.n_candidates, self.n_groups)), axis=1)
        spc = self.samples_per_class
        positions = chosen_groups[:, : self.n_draws, None] * spc + np.arange(spc)
        positions = positions.reshape(self.n_candidates, -1)  # rows of the flattened big batch
        stored = self.stored()
        big_embeds = stored[torch.as_tensor(big.reshape(-1), device=stored.device)].double()
        big_embeds = self.random_projection(big_embeds)
        candidate_embeds = big_embeds[torch.as_tensor(positions, device=stored.device)]
        best = int(self.costs(big_embeds, candidate_embeds).argmin())
        return big.reshape(-1)[positions[best]].tolist()

    def costs(self, big: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Cost (n_candidates,) of each candidate (n_candidates×bs×D) against the big batch."""
        raise NotImplementedError
