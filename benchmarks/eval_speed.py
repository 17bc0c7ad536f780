"""Evaluation speed and peak memory on a synthetic SOP-sized set, against the floors and PML.

    python benchmarks/eval_speed.py                          # 60,502 × 128, 11,318 classes
    python benchmarks/eval_speed.py --n 20000 --classes 3741 --backends auto torch

The set is clustered like SOP: ``--classes`` Gaussian class centres in ``--dim`` dimensions, every
class with at least 2 samples (the rest spread at random, SOP-like 2–12), embeddings
L2-normalised. Each measurement runs in a fresh process (spawned), so its peak memory is its own:
"peak MiB" is the peak resident memory above the process's memory once the data exists.

Rows:
* ``floor: faiss IP search k=1000``: a bare exact inner-product search (``IndexFlatIP``) of every
  sample against all, k = 1000: what any exact R@1000 costs.
* ``ours: R@1/10/100/1000 + MAP@R``: our evaluator, every neighbour metric of the default SOP
  suite from one shared search. Goal: ≤ 1.3 × the search floor.
* ``floor: faiss k-means``: one ``faiss.Kmeans`` with the reference's settings (K = classes,
  20 iterations), the algorithm published NMI/F1 numbers used.
* ``ours: NMI + F1``: our evaluator's k-means and both metrics. Goal: ≤ 1.1 × the k-means floor.
* ``ours: full default suite``: R@1/10/100/1000, MAP@R, NMI and F1 in one call.
* ``ours: P@1 + MAP@R`` and ``PML: P@1 + MAP@R`` (pytorch-metric-learning's AccuracyCalculator
  with k="max_bin_count", its only setting that fits in memory on SOP; its default k=None needs
  ~44 GB): goal ours ≥ 2 × faster. With NMI added on both sides as a further pair of rows, and
  PML at its default k=None (the full ranking) up to ``PML_FULL_RANKING_MAX_N`` samples.

``--backends`` adds rows of our evaluator with the pure-torch backend. PML is used here only, as a
yardstick; the toolkit never imports it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import pathlib
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SOP_SUITE = ["e_recall@1", "e_recall@10", "e_recall@100", "e_recall@1000", "mAP_R", "nmi", "f1"]
KNN_SUITE = SOP_SUITE[:5]
# PML's default k=None ranks the whole set: N² × 12 bytes of faiss output (44 GB on SOP).
PML_FULL_RANKING_MAX_N = 20000


def synthetic_set(n: int, classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n×dim float32 unit rows, (n,) int64 labels): Gaussian classes of at least 2 samples."""
    if n < 2 * classes:
        raise SystemExit(f"--n {n} must be at least 2 × --classes ({2 * classes})")
    rng = np.random.default_rng(seed)
    labels = np.concatenate(
        [np.repeat(np.arange(classes), 2), rng.integers(0, classes, n - 2 * classes)]
    )
    rng.shuffle(labels)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    x = centres[labels] + 1.2 * rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels.astype(np.int64)


def _rss_kib(field: str) -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _measure(task: str, args: dict[str, Any], queue: Any) -> None:
    """Child process: build the data and the task (imports included), reset the peak-memory
    counter, time the task's run, report (seconds, peak MiB above the start, values)."""
    import torch

    torch.set_num_threads(args["threads"])
    try:
        import faiss

        faiss.omp_set_num_threads(args["threads"])
    except ImportError:
        pass
    x, y = synthetic_set(args["n"], args["classes"], args["dim"], args["seed"])
    run = TASKS[task](args)
    baseline = _rss_kib("VmRSS")
    pathlib.Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS)
    started = time.perf_counter()
    values = run(x, y)
    seconds = time.perf_counter() - started
    queue.put((seconds, (_rss_kib("VmHWM") - baseline) / 1024, values))


Run = Callable[[np.ndarray, np.ndarray], dict[str, float]]


def _ours(keys: list[str], backend: str) -> Callable[[dict[str, Any]], Run]:
    def setup(args: dict[str, Any]) -> Run:
        import metrics

        evaluator = metrics.Evaluator(
            keys, kmeans_seed=args["seed"], backend=backend, show_progress=False
        )
        return evaluator.compute

    return setup


def _faiss_search(args: dict[str, Any]) -> Run:
    import faiss

    def run(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        _, found = index.search(x, min(1000, x.shape[0]))
        return {"R@1 (self not removed)": float((y[found[:, 1]] == y).mean())}

    return run


def _faiss_kmeans(args: dict[str, Any]) -> Run:
    import faiss

    def run(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        kmeans = faiss.Kmeans(
            x.shape[1],
            int(np.unique(y).size),
            niter=20,
            seed=args["seed"],
            min_points_per_centroid=1,
            max_points_per_centroid=10**9,
        )
        kmeans.train(x)
        return {}

    return run


def _pml(include: tuple[str, ...], k: Any = "max_bin_count") -> Callable[[dict[str, Any]], Run]:
    def setup(args: dict[str, Any]) -> Run:
        import torch
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

        calculator = AccuracyCalculator(include=include, k=k, device=torch.device("cpu"))

        def run(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
            return {key: float(v) for key, v in calculator.get_accuracy(x, y).items()}

        return run

    return setup


TASKS = {
    "floor: faiss IP search k=1000": _faiss_search,
    "ours: R@1/10/100/1000 + MAP@R": _ours(KNN_SUITE, "auto"),
    "floor: faiss k-means": _faiss_kmeans,
    "ours: NMI + F1": _ours(["nmi", "f1"], "auto"),
    "ours: P@1 + MAP@R": _ours(["precision_at_1", "mAP_R"], "auto"),
    "PML: P@1 + MAP@R": _pml(("precision_at_1", "mean_average_precision_at_r")),
    "PML (default k=None): P@1 + MAP@R": _pml(
        ("precision_at_1", "mean_average_precision_at_r"), None
    ),
    "ours: full default suite": _ours(SOP_SUITE, "auto"),
    "ours: P@1 + MAP@R + NMI": _ours(["precision_at_1", "mAP_R", "nmi"], "auto"),
    "PML: P@1 + MAP@R + NMI": _pml(("precision_at_1", "mean_average_precision_at_r", "NMI")),
    "ours (torch): R@1/10/100/1000 + MAP@R": _ours(KNN_SUITE, "torch"),
    "ours (torch): NMI + F1": _ours(["nmi", "f1"], "torch"),
}
# (row, row it is compared with, goal for time(row) / time(reference))
RATIOS = [
    ("ours: R@1/10/100/1000 + MAP@R", "floor: faiss IP search k=1000", "≤ 1.3"),
    ("ours: NMI + F1", "floor: faiss k-means", "≤ 1.1"),
    ("ours: P@1 + MAP@R", "PML: P@1 + MAP@R", "≤ 0.5"),
    ("ours: P@1 + MAP@R", "PML (default k=None): P@1 + MAP@R", "≤ 0.5"),
    ("ours: P@1 + MAP@R + NMI", "PML: P@1 + MAP@R + NMI", ""),
    ("ours (torch): R@1/10/100/1000 + MAP@R", "floor: faiss IP search k=1000", ""),
    ("ours (torch): NMI + F1", "floor: faiss k-means", ""),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=60502, help="samples (SOP test: 60,502)")
    parser.add_argument("--classes", type=int, default=11318, help="classes (SOP test: 11,318)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch and faiss CPU threads")
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["auto"],
        choices=["auto", "torch"],
        help="our evaluator's backends to time (auto: faiss when installed)",
    )
    parser.add_argument("--skip", nargs="*", default=[], help="row-name substrings to skip")
    parser.add_argument("--markdown", type=pathlib.Path, help="also write the table here")
    args = parser.parse_args()
    settings = {k: getattr(args, k) for k in ("n", "classes", "dim", "seed", "threads")}

    import importlib.util

    have_faiss = importlib.util.find_spec("faiss") is not None
    have_pml = importlib.util.find_spec("pytorch_metric_learning") is not None
    rows = [
        name
        for name in TASKS
        if (have_faiss or ("faiss" not in name and "PML" not in name))
        and (have_pml or "PML" not in name)
        and ("torch" in args.backends or "(torch)" not in name)
        and not any(part in name for part in args.skip)
        and (args.n <= PML_FULL_RANKING_MAX_N or "k=None" not in name)
    ]
    machine = platform.processor() or platform.machine()
    print(f"{args.n:,} × {args.dim}, {args.classes:,} classes, {args.threads} threads, {machine}")
    context = multiprocessing.get_context("spawn")
    results: dict[str, tuple[float, float, dict[str, float]]] = {}
    for name in rows:
        queue = context.Queue()
        child = context.Process(target=_measure, args=(name, settings, queue))
        child.start()
        results[name] = queue.get()
        child.join()
        seconds, peak, values = results[name]
        shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items())
        print(f"{name:42s} {seconds:8.1f} s  {peak:8.0f} MiB  {shown}", flush=True)

    lines = [
        f"Synthetic set: {args.n:,} × {args.dim}, {args.classes:,} classes, "
        f"{args.threads} CPU threads.",
        "",
        "| measurement | time (s) | peak memory (MiB) |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {s:.1f} | {m:.0f} |" for name, (s, m, _) in results.items()]
    lines += ["", "| ratio | measured | goal |", "|---|---|---|"]
    for row, reference, goal in RATIOS:
        if row in results and reference in results:
            ratio = results[row][0] / results[reference][0]
            lines.append(f"| {row} / {reference} | {ratio:.2f} | {goal} |")
    table = "\n".join(lines)
    print("\n" + table)
    if args.markdown:
        args.markdown.write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
