"""Milliseconds per forward + backward of every registered loss with its default miner.

    python benchmarks/loss_step.py                       # batch 112, dimension 128, CUDA if present
    python benchmarks/loss_step.py --device cpu --threads 2 --repeats 100

For each key of ``criteria.CRITERIA`` (so losses added later are measured without editing this
file) the loss is built from the parser defaults with its default miner (``--batch_mining
distance`` when the loss allows it, else its first allowed miner; none for losses that mine
internally or use proxies). One step is: L2-normalise a B×D leaf tensor, mine, compute the loss,
backpropagate into the embeddings and the loss's own parameters. Where pytorch-metric-learning
(PML) is importable, the equivalent PML loss/miner is timed in the same run on the same inputs,
interleaved with ours repeat by repeat so that load on the machine affects both alike; the table
gives the median and the minimum of each and the ratios ours / PML (< 1: ours is faster). On
the CPU the default is one torch thread (``--threads``).

Like for like: where our loss has terms PML's lacks (the λ_l2·mean ‖x‖ penalty of npair, angular
and lifted; angular's N-pair term), the PML side gets the same terms from PML's own pieces
(``LpRegularizer``, ``MultipleLosses``), so both compute the same loss. Rows marked "approx."
remain different losses; ``EXTRA_ROWS`` adds rows with flags that match PML's tuple construction.

PML is used here only, as a yardstick; the toolkit never imports it.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import criteria  # noqa: E402
import parameters  # noqa: E402
from criteria import CRITERIA  # noqa: E402

DEFAULT_MINER = "distance"  # the --batch_mining default
# The only miners the reference allows for its tuple losses (spec revisiting_dml.md §3.2).
REFERENCE_MINERS = {"npair": "npair", "angular": "npair", "lifted": "lifted"}
# Extra rows measured like for like with PML: (loss key, extra flags, PML equivalent's key). PML's
# N-pair and angular losses build one (anchor, positive) pair per class; our npair miner does so
# with this flag (by default every sample is an anchor, so ~4× the tuplet entries of PML's). The
# last row drops the norm penalty on both sides: the bare N-pair computation.
EXTRA_ROWS = [
    ("npair", ("--miner_npair_one_pair_per_class",), "npair"),
    ("angular", ("--miner_npair_one_pair_per_class",), "angular"),
    ("npair", ("--miner_npair_one_pair_per_class", "--loss_npair_l2", "0"), "npair_no_l2"),
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def default_miner(key: str) -> str | None:
    """The miner a loss is measured with: ``distance`` (the flag default) when allowed, else the
    reference's miner for the loss when allowed, else its first allowed key."""
    loss_class = CRITERIA.get(key)
    if not loss_class.requires_batchminer:
        return None
    allowed = loss_class.allowed_miners
    for miner in (DEFAULT_MINER, REFERENCE_MINERS.get(key)):
        if miner in allowed:
            return miner
    return sorted(allowed)[0]


def build_ours(
    key: str, dim: int, n_classes: int, device: torch.device, extra: tuple[str, ...] = ()
) -> torch.nn.Module:
    flags = ["--loss", key, "--embed_dim", str(dim), *extra]
    miner = default_miner(key)
    if miner is not None:
        flags += ["--batch_mining", miner]
    opt = parameters.build_parser().parse_args(flags)
    opt.n_classes = n_classes
    return criteria.build(opt).to(device)


def pml_equivalents(dim: int, n_classes: int) -> dict[str, tuple[str, Any, Any]]:
    """Our loss key -> (description, PML loss, PML miner or None), our defaults carried over.

    Empty when pytorch-metric-learning is not importable. Losses PML lacks (quadruplet) or
    implements differently are absent or described as approximate.
    """
    try:
        from pytorch_metric_learning import distances, losses, miners, regularizers
    except ImportError:
        return {}
    # PML's HistogramLoss indexes with a list (a deprecation warning on every call).
    warnings.filterwarnings("ignore", category=UserWarning, module="pytorch_metric_learning")

    def distance_miner() -> Any:
        return miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)

    squared = distances.LpDistance(power=2)
    # Our npair, angular and lifted losses add λ_l2·mean ‖x‖ (λ_l2 = 0.005, the reference's); PML
    # adds the same term through an embedding regulariser, so both sides compute it.
    norm_penalty = {
        "embedding_regularizer": regularizers.LpRegularizer(),
        "embedding_reg_weight": 0.005,
    }
    return {
        "triplet": (
            "TripletMarginLoss(squared L2) + DistanceWeightedMiner",
            losses.TripletMarginLoss(margin=0.2, distance=squared),
            distance_miner(),
        ),
        "contrastive": (
            "ContrastiveLoss + DistanceWeightedMiner",
            losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0),
            distance_miner(),
        ),
        "margin": (
            "MarginLoss(learn_beta) + DistanceWeightedMiner",
            losses.MarginLoss(margin=0.2, beta=1.2, learn_beta=True, num_classes=n_classes),
            distance_miner(),
        ),
        "snr": (
            "SignalToNoiseRatioContrastiveLoss + DistanceWeightedMiner (approx.: pairs)",
            losses.SignalToNoiseRatioContrastiveLoss(pos_margin=0.0, neg_margin=1.0),
            distance_miner(),
        ),
        "proxynca": (
            "ProxyNCALoss(softmax_scale 9)",
            losses.ProxyNCALoss(n_classes, dim, softmax_scale=9),
            None,
        ),
        "npair": (
            "NPairsLoss + 0.005·LpRegularizer",
            losses.NPairsLoss(**norm_penalty),
            None,
        ),
        "npair_no_l2": ("NPairsLoss", losses.NPairsLoss(), None),
        "angular": (
            "NPairsLoss + 2·AngularLoss(α 45) + 0.005·LpRegularizer",
            losses.MultipleLosses(
                [losses.NPairsLoss(**norm_penalty), losses.AngularLoss(alpha=45)], weights=[1, 2]
            ),
            None,
        ),
        "lifted": (
            "GeneralizedLiftedStructureLoss + 0.005·LpRegularizer",
            losses.GeneralizedLiftedStructureLoss(neg_margin=1.0, **norm_penalty),
            None,
        ),
        "multisimilarity": (
            "MultiSimilarityLoss + MultiSimilarityMiner",
            losses.MultiSimilarityLoss(alpha=2, beta=40, base=0.5),
            miners.MultiSimilarityMiner(epsilon=0.1),
        ),
        "histogram": ("HistogramLoss(64 intervals)", losses.HistogramLoss(n_bins=64), None),
        "softmax": (
            "NormalizedSoftmaxLoss",
            losses.NormalizedSoftmaxLoss(n_classes, dim, temperature=0.05),
            None,
        ),
        "softtriplet": (
            "SoftTripleLoss(K 2)",
            losses.SoftTripleLoss(
                n_classes, dim, centers_per_class=2, la=8, gamma=0.1, margin=0.01
            ),
            None,
        ),
        "arcface": (
            "ArcFaceLoss",
            losses.ArcFaceLoss(n_classes, dim, margin=math.degrees(0.5), scale=16),
            None,
        ),
        "proxy_anchor": (
            "ProxyAnchorLoss",
            losses.ProxyAnchorLoss(n_classes, dim, margin=0.1, alpha=32),
            None,
        ),
    }


def pml_step(loss: Any, miner: Any) -> LossFn:
    def step(embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if miner is None:
            return loss(embeds, labels)
        return loss(embeds, labels, miner(embeds, labels))

    return step


def timed(fn: LossFn, raw: torch.Tensor, labels: torch.Tensor, params: list[torch.Tensor]) -> float:
    """Milliseconds of one normalise + loss + backward, synchronised on CUDA."""
    for tensor in (raw, *params):
        tensor.grad = None
    if raw.is_cuda:
        torch.cuda.synchronize(raw.device)
    start = time.perf_counter()
    fn(F.normalize(raw, dim=1), labels).backward()
    if raw.is_cuda:
        torch.cuda.synchronize(raw.device)
    return (time.perf_counter() - start) * 1e3


def measure(
    candidates: list[tuple[LossFn, list[torch.Tensor]]],
    raw: torch.Tensor,
    labels: torch.Tensor,
    warmup: int,
    repeats: int,
) -> list[tuple[float, float]]:
    """(median, minimum) milliseconds of each candidate, measured interleaved (one step of each
    per repeat). The minimum is the robust figure on an oversubscribed CPU, where preemption
    inflates more than half of the steps."""
    times: list[list[float]] = [[] for _ in candidates]
    for repeat in range(warmup + repeats):
        for (fn, params), record in zip(candidates, times, strict=True):
            elapsed = timed(fn, raw, labels, params)
            if repeat >= warmup:
                record.append(elapsed)
    return [(statistics.median(record), min(record)) for record in times]


def batch(
    size: int, dim: int, n_classes: int, per_class: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """A B×D leaf tensor and SPC-N labels (B/N distinct classes out of ``n_classes``)."""
    classes = torch.randperm(n_classes)[: size // per_class]
    labels = classes.repeat_interleave(per_class).to(device)
    return torch.randn(size, dim, device=device, requires_grad=True), labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bs", type=int, default=112, help="batch size")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension")
    parser.add_argument("--n_classes", type=int, default=100, help="training classes (proxies)")
    parser.add_argument("--samples_per_class", type=int, default=2, help="SPC-N of the batch")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=30, help="timed steps (median reported)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (0: torch's default); one thread gives stable medians on a "
        "shared CPU, where a thread pool waits for preempted workers",
    )
    parser.add_argument("--losses", nargs="*", default=None, help="only these keys")
    args = parser.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    torch.manual_seed(0)
    raw, labels = batch(args.bs, args.dim, args.n_classes, args.samples_per_class, device)
    theirs_by_key = pml_equivalents(args.dim, args.n_classes)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"batch {args.bs}, dimension {args.dim}, {args.n_classes} classes, SPC-"
        f"{args.samples_per_class}; {device} ({name or platform.machine()}, "
        f"{torch.get_num_threads()} threads); torch {torch.__version__}; median of "
        f"{args.repeats} steps after {args.warmup} warm-up, ours and PML interleaved\n"
    )
    print(
        "| loss | our miner | ours ms (median / min) | pytorch-metric-learning equivalent "
        "| PML ms (median / min) | ours/PML (median / min) |"
    )
    print("|---|---|---:|---|---:|---:|")
    known = parameters.build_parser()._option_string_actions
    rows = [(key, (), key) for key in args.losses or CRITERIA.keys()]
    rows += [
        (key, extra, pml_key)
        for key, extra, pml_key in EXTRA_ROWS
        if key in CRITERIA and (not args.losses or key in args.losses)
        if all(flag in known for flag in extra if flag.startswith("--"))
    ]
    for key, extra, pml_key in rows:
        torch.manual_seed(0)
        ours = build_ours(key, args.dim, args.n_classes, device, extra)
        candidates: list[tuple[LossFn, list[torch.Tensor]]] = [(ours, list(ours.parameters()))]
        theirs = theirs_by_key.get(pml_key)
        if theirs is not None:
            loss = theirs[1].to(device)
            candidates.append((pml_step(loss, theirs[2]), list(loss.parameters())))
        stats = measure(candidates, raw, labels, args.warmup, args.repeats)
        miner = " ".join([default_miner(key) or "—", *extra])
        (ours_median, ours_min), *pml = stats
        row = f"| `{key}` | {miner} | {ours_median:.2f} / {ours_min:.2f} |"
        if theirs is None:
            row += " — | — | — |"
        else:
            (pml_median, pml_min), ratios = pml[0], (ours_median / pml[0][0], ours_min / pml[0][1])
            row += f" {theirs[0]} | {pml_median:.2f} / {pml_min:.2f} |"
            row += f" {ratios[0]:.2f} / {ratios[1]:.2f} |"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
