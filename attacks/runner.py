"""Run attack strings over a split: robrank's AdvRankLauncher/Swipe loop (robustness.md §2.1).

The model is put in eval mode, the clean embeddings of the whole split are computed once (the
candidate set), and every attacked item (each query, or each candidate for CA) is attacked once,
in batches. Targets come from a CPU generator seeded with ``seed`` afresh for every attack
string, so the same checkpoint gives the same scores on any device and in any profile order.
Summaries are means over the attacked items (``compat``: robrank's mean of per-batch means).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

import attacks
from attacks.base import METRICS, Attack, CandidateSet, embedding_form
from attacks.pgd import pgd
from attacks.spec import AttackSpec
from utilities.embedding import evaluating
from utilities.errors import ConfigError

Summary = dict[str, float]
# Bytes per element of the B×count×N tables of CA/QA/SPQA (float64 ranks, float32 gaps and
# their gradient), with headroom.
WORKING_BYTES = 32


def free_memory(device: torch.device) -> int:
    """Bytes free for tensors on ``device`` (the CUDA allocator's view, or the system's
    available memory)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as info:
            fields = dict(line.split(":", 1) for line in info)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class AttackRunner:
    """Attacks ``model`` on ``dataset`` (items ``(image, label, index)``, optional boolean
    ``query``/``gallery`` masks).

    ``metric``: N (normalised Euclidean), E (Euclidean) or C (cosine); ``max_batches`` stops each
    attack after that many batches (robrank's ``-m``); ``dataset_name`` selects SPQA's ξ rate.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: Any,
        *,
        device: torch.device,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        metric: str = "N",
        compat: bool = False,
        max_batches: int | None = None,
        dataset_name: str | None = None,
        progress: bool = True,
    ) -> None:
        if metric not in METRICS:
            raise ConfigError(f"--attack_metric: got {metric!r}, expected one of N, E, C")
        self.model, self.dataset, self.device = model, dataset, device
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.metric, self.compat, self.max_batches = metric, compat, max_batches
        self.dataset_name, self.progress = dataset_name, progress
        self._candidates: CandidateSet | None = None

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings of B×C×H×W images in [0,1], in the metric's form."""
        return embedding_form(self.model(images)["embeds"].float(), self.metric)

    def _loader(self, indices: Sequence[int] | None = None) -> DataLoader:
        data = self.dataset if indices is None else Subset(self.dataset, list(indices))
        return DataLoader(
            data, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers
        )

    @torch.no_grad()
    def candidates(self) -> CandidateSet:
        """The clean candidate set (computed once)."""
        if self._candidates is None:
            with evaluating(self.model):
                chunks = [self.embed(images.to(self.device)) for images, _, _ in self._loader()]
            n = len(self.dataset)
            labels = torch.as_tensor(np.asarray(self.dataset.labels), device=self.device)
            masks = [getattr(self.dataset, name, None) for name in ("query", "gallery")]
            index = [
                torch.arange(n, device=self.device)
                if mask is None
                else torch.as_tensor(np.asarray(mask), device=self.device).nonzero().squeeze(1)
                for mask in masks
            ]
            self._candidates = CandidateSet(
                embeds=torch.cat(chunks),
                labels=labels.long(),
                query_index=index[0],
                gallery_index=index[1],
                metric=self.metric,
                dataset_name=self.dataset_name,
            )
        return self._candidates

    def check_size(self, spec: AttackSpec) -> None:
        """ConfigError when W (CA) or M (QA, SPQA, FOA) asks for more targets than the split
        has, or for a B×count×N working set larger than the free memory; the message names
        the largest value that fits."""
        count = spec.W or spec.M
        if not count:
            return
        key = "W" if spec.W else "M"
        n = self.split_size("query" if key == "W" else "gallery")
        largest = min(n - 1, int(free_memory(self.device) // (WORKING_BYTES * self.batch_size * n)))
        if count > largest:
            raise ConfigError(
                f"--attack: {spec.string}: {key}={count} targets for each of {self.batch_size} "
                f"attacked items among {n} do not fit the split and the free memory; the "
                f"largest {key} that fits is {max(largest, 0)}"
            )

    def split_size(self, role: str) -> int:
        """Items of the split in ``role`` ("query" or "gallery"; all of them without masks)."""
        mask = getattr(self.dataset, role, None)
        return int(np.asarray(mask).sum()) if mask is not None else len(self.dataset)

    def run(self, string: str) -> tuple[Summary, Summary]:
        """(benign summary, adversarial summary) of one attack string over the split."""
        attack = attacks.build(string, compat=self.compat)
        self.check_size(attack.spec)
        cands = self.candidates()
        generator = torch.Generator().manual_seed(self.seed)
        items = cands.gallery_index if attack.perturbs == "candidate" else cands.query_index
        loader = self._loader(items.cpu().tolist())
        total = len(loader) if self.max_batches is None else min(len(loader), self.max_batches)
        benign: list[dict[str, torch.Tensor]] = []
        adversarial: list[dict[str, torch.Tensor]] = []
        with evaluating(self.model):
            bar = tqdm(loader, total=total, desc=string, leave=False, disable=not self.progress)
            for number, (images, _, index) in enumerate(bar):
                if number >= total:
                    break
                before, after = self._attack_batch(attack, cands, images, index, generator)
                benign.append(before)
                adversarial.append(after)
        return self._summarise(benign), self._summarise(adversarial)

    def _attack_batch(
        self,
        attack: Attack,
        cands: CandidateSet,
        images: torch.Tensor,
        index: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        batch = cands.batch(images.to(self.device), index.to(self.device))
        with torch.no_grad():
            targets = attack.select(batch, cands, generator)
            before = attack.measure(batch.clean, batch, cands, targets)
        spec = attack.spec
        result = pgd(
            lambda x: attack.objective(self.embed(x), batch, cands, targets),
            batch.images,
            eps=spec.eps,
            alpha=spec.alpha,
            steps=spec.pgditer,
            random_start=spec.rinit,
            generator=generator,
        )
        with torch.no_grad():
            embeds = self.embed(result.adversarial)
            previous = self.embed(result.penultimate) if attack.wants_penultimate else None
            after = attack.measure_adversarial(embeds, previous, batch, cands, targets)
        return before, after

    def _summarise(self, parts: list[dict[str, torch.Tensor]]) -> Summary:
        if not parts:
            return {}
        if self.compat:  # robrank: mean over batches of the per-batch means
            return {k: float(np.mean([p[k].mean().item() for p in parts])) for k in parts[0]}
        return {k: torch.cat([p[k] for p in parts]).mean().item() for k in parts[0]}

    def swipe(
        self,
        strings: Sequence[str],
        report: Callable[[int, str, tuple[Summary, Summary]], None] | None = None,
    ) -> dict[str, list[Summary]]:
        """``{attack_string: [benign, adversarial]}`` (robrank's swipe format), in order;
        ``report(i, string, result)`` is called after each attack (progress)."""
        for string in strings:  # fail on a bad string before spending time on the good ones
            self.check_size(attacks.parse_attack_string(string))
        results: dict[str, list[Summary]] = {}
        for number, string in enumerate(strings):
            outcome = self.run(string)
            results[string] = list(outcome)
            if report is not None:
                report(number, string, outcome)
        return results
