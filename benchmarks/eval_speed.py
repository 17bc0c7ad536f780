"""Evaluation speed and peak memory on a synthetic SOP-sized set, against the floors and PML.

    python benchmarks/eval_speed.py                          # 60,502 × 128, 11,318 classes
    python benchmarks/eval_speed.py --n 30000 --classes 3000 --skip k-means NMI
    python benchmarks/eval_speed.py --n 20000 --classes 3741 --backends auto torch

The set is clustered like SOP: ``--classes`` Gaussian class centres in ``--dim`` dimensions, every
class with at least 2 samples (the rest spread at random, SOP-like 2–12), embeddings
L2-normalised. Each measurement runs in a fresh process (spawned), so its peak memory is its own:
"peak MiB" is the peak resident memory above the process's memory once the data exists.

Rows:
* ``floor: chunked product``: the bare similarity matrix product of every sample against all,
  in the exact pass's chunks into one reused buffer, nothing else: what any exact ranking costs.
* ``faiss exact search k=1000``: a bare exact inner-product search (``IndexFlatIP``), k = 1000:
  what an exact R@1000 by search costs.
* ``ours: full SOP suite``: R@1/10/100/1000, MAP@R, R-precision, MRR and the full-ranking mAP
  from our evaluator's exact rank pass (the default). Goals: ≤ 0.5 × the faiss search and
  ≤ 2 × the product.
* ``top-k path: SOP suite without mAP``: the same metrics but mAP from the nearest-neighbour
  search as deep as R@1000 (faiss when installed): the path all neighbour metrics took before
  the exact pass; the full-ranking mAP is out of its reach (a search as deep as the gallery).
* ``floor: faiss k-means`` and ``ours: NMI + F1`` (``benchmarks/kmeans_speed.py`` has the
  k-means floors in detail).
* ``ours: P@1 + MAP@R`` and ``PML: P@1 + MAP@R`` (pytorch-metric-learning's AccuracyCalculator
  with k="max_bin_count", its only setting that fits in memory on SOP; its default k=None needs
  ~44 GB), in process; PML at its default k=None (the full ranking) up to
  ``PML_FULL_RANKING_MAX_N`` samples.
* ``whole process: ...``: the same pair as commands, timed from start to exit (interpreter,
  imports, reading the embeddings): ``eval.py --embeddings FILE --evaluation_metrics
  precision_at_1 mAP_R --device cpu`` against a script that loads the same file and runs PML's
  AccuracyCalculator. Goal ≤ 0.4.

``--backends torch`` adds rows of the top-k path with the pure-torch search. PML is used here
only, as a yardstick (``pip install pytorch-metric-learning``); the toolkit never imports it.
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
RANK_SUITE = [*SOP_SUITE[:5], "r_precision", "mrr", "mAP"]
TOPK_SUITE = RANK_SUITE[:-1]
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


def set_parser(description: str, classes_help: str) -> argparse.ArgumentParser:
    """The flags every evaluation benchmark shares: the synthetic set, threads, rows to skip,
    the Markdown copy; numbers range-checked, defaults shown, bad input one line and exit 2."""
    from parameters import DefaultsHelpFormatter, OneLineErrorParser
    from utilities.flag_types import nonnegative_int, positive_int

    parser = OneLineErrorParser(description=description, formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--n", type=positive_int, default=60502, help="samples (SOP test: 60,502)")
    parser.add_argument("--classes", type=positive_int, default=11318, help=classes_help)
    parser.add_argument("--dim", type=positive_int, default=128, help="embedding dimension")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the set")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch and faiss threads")
    parser.add_argument("--skip", nargs="*", default=[], help="row-name substrings to skip")
    parser.add_argument("--markdown", type=pathlib.Path, help="also write the table here")
    return parser


def check_set(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Before any work: the set can be built and the Markdown copy can be written."""
    from utilities.errors import ConfigError
    from utilities.outputs import check_writable

    if args.n < 2 * args.classes:
        parser.error(f"--n {args.n} must be at least 2 × --classes ({2 * args.classes})")
    if args.markdown:
        try:
            check_writable(args.markdown, "--markdown")
        except ConfigError as error:
            parser.error(str(error))


def write_markdown(path: pathlib.Path | None, table: str) -> None:
    """The table (already printed) to ``path`` atomically; a failed write saves a fallback copy
    and says where, in one line, exit 2."""
    from utilities.errors import ConfigError
    from utilities.files import atomic_write_text
    from utilities.outputs import save_result

    if path is None:
        return
    try:
        save_result(path, lambda target: atomic_write_text(target, table + "\n"), "--markdown")
    except ConfigError as error:
        print(f"{pathlib.Path(sys.argv[0]).name}: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def use_threads(threads: int) -> None:
    """torch's and (when installed) faiss's CPU threads."""
    import torch

    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass


def rss_kib(field: str) -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _measure(task: str, args: dict[str, Any], queue: Any) -> None:
    """Child process: build the data and the task (imports included), reset the peak-memory
    counter, time the task's run, report (seconds, peak MiB above the start, values)."""
    use_threads(args["threads"])
    x, y = synthetic_set(args["n"], args["classes"], args["dim"], args["seed"])
    run = TASKS[task](args)
    baseline = rss_kib("VmRSS")
    pathlib.Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS)
    started = time.perf_counter()
    values = run(x, y)
    seconds = time.perf_counter() - started
    peak = (rss_kib("VmHWM") - baseline) / 1024
    # A whole-process row reports its command's own time and peak memory.
    seconds, peak = values.pop("command s", seconds), values.pop("command peak MiB", peak)
    queue.put((seconds, peak, values))


Run = Callable[[np.ndarray, np.ndarray], dict[str, float]]


def _ours(
    keys: list[str], backend: str = "auto", ranking: str = "auto"
) -> Callable[[dict[str, Any]], Run]:
    def setup(args: dict[str, Any]) -> Run:
        import metrics

        evaluator = metrics.Evaluator(
            keys, kmeans_seed=args["seed"], backend=backend, show_progress=False, ranking=ranking
        )
        return evaluator.compute

    return setup


def _chunked_product(args: dict[str, Any]) -> Run:
    import torch

    from metrics.knn import chunk_rows

    def run(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        features = torch.from_numpy(x)
        rows = chunk_rows(None, features.shape[0])
        squares = features.pow(2).sum(1)[None, :]
        out = torch.empty(rows, features.shape[0])
        for start in range(0, features.shape[0], rows):
            chunk = features[start : start + rows]
            torch.addmm(squares, chunk, features.T, alpha=-2, out=out[: chunk.shape[0]])
        return {}

    return run


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


# The PML side of the whole-process pair: load the file, compute, print the values.
PML_SCRIPT = """
import sys, json, numpy as np, torch
torch.set_num_threads(int(sys.argv[2]))
import faiss
faiss.omp_set_num_threads(int(sys.argv[2]))
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
data = np.load(sys.argv[1])
calculator = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"),
                                k="max_bin_count", device=torch.device("cpu"))
values = calculator.get_accuracy(data["embeddings"], data["labels"])
print(json.dumps({key: float(value) for key, value in values.items()}))
"""


def _whole_process(side: str) -> Callable[[dict[str, Any]], Run]:
    """A command timed from start to exit; the embeddings file is written before the clock."""

    def setup(args: dict[str, Any]) -> Run:
        import json
        import os
        import resource
        import subprocess
        import tempfile

        from utilities.embedding_files import write_embeddings

        folder = pathlib.Path(tempfile.mkdtemp(prefix="eval_speed_"))
        path = folder / "embeddings.npz"
        env = {**os.environ, "OMP_NUM_THREADS": str(args["threads"])}
        if side == "ours":
            command = [
                sys.executable,
                str(ROOT / "eval.py"),
                "--embeddings",
                str(path),
                "--evaluation_metrics",
                "precision_at_1",
                "mAP_R",
                "--device",
                "cpu",
            ]
        else:
            command = [sys.executable, "-c", PML_SCRIPT, str(path), str(args["threads"])]

        def run(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
            if not path.exists():
                write_embeddings(path, {"embeddings": x, "labels": y})
            started = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            seconds = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            last = done.stdout.strip().splitlines()
            if side == "ours":  # eval.py prints "key value" lines
                values = {line.split()[0]: float(line.split()[1]) for line in last[-2:]}
            else:
                values = json.loads(last[-1])
            return {**values, "command s": seconds, "command peak MiB": peak}

        return run

    return setup


TASKS = {
    "floor: chunked product": _chunked_product,
    "faiss exact search k=1000": _faiss_search,
    "ours: full SOP suite": _ours(RANK_SUITE),
    "top-k path: SOP suite without mAP": _ours(TOPK_SUITE, ranking="topk"),
    "floor: faiss k-means": _faiss_kmeans,
    "ours: NMI + F1": _ours(["nmi", "f1"]),
    "ours: P@1 + MAP@R": _ours(["precision_at_1", "mAP_R"]),
    "PML: P@1 + MAP@R": _pml(("precision_at_1", "mean_average_precision_at_r")),
    "PML (default k=None): P@1 + MAP@R": _pml(
        ("precision_at_1", "mean_average_precision_at_r"), None
    ),
    "whole process: ours P@1 + MAP@R": _whole_process("ours"),
    "whole process: PML P@1 + MAP@R": _whole_process("pml"),
    "ours: P@1 + MAP@R + NMI": _ours(["precision_at_1", "mAP_R", "nmi"]),
    "PML: P@1 + MAP@R + NMI": _pml(("precision_at_1", "mean_average_precision_at_r", "NMI")),
    "top-k path (torch): SOP suite without mAP": _ours(TOPK_SUITE, "torch", "topk"),
}
# (row, row it is compared with, goal for time(row) / time(reference))
RATIOS = [
    ("ours: full SOP suite", "faiss exact search k=1000", "≤ 0.5"),
    ("ours: full SOP suite", "floor: chunked product", "≤ 2"),
    ("top-k path: SOP suite without mAP", "faiss exact search k=1000", ""),
    ("top-k path: SOP suite without mAP", "floor: chunked product", ""),
    ("ours: NMI + F1", "floor: faiss k-means", ""),
    ("ours: P@1 + MAP@R", "PML: P@1 + MAP@R", ""),
    ("ours: P@1 + MAP@R", "PML (default k=None): P@1 + MAP@R", ""),
    ("whole process: ours P@1 + MAP@R", "whole process: PML P@1 + MAP@R", "≤ 0.4"),
    ("ours: P@1 + MAP@R + NMI", "PML: P@1 + MAP@R + NMI", ""),
    ("top-k path (torch): SOP suite without mAP", "faiss exact search k=1000", ""),
]


def main() -> None:
    parser = set_parser(__doc__.split("\n")[0], "classes (SOP test: 11,318)")
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["auto"],
        choices=["auto", "torch"],
        help="backends of the top-k path rows (auto: faiss when installed)",
    )
    args = parser.parse_args()
    check_set(parser, args)
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
    write_markdown(args.markdown, table)


if __name__ == "__main__":
    main()
