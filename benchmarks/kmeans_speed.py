"""k-means speed for NMI/F1: ours (torch and faiss backends) against 20 N×K products.

    python benchmarks/kmeans_speed.py --n 30000 --classes 3000 --threads 1 --repeat 3
    python benchmarks/kmeans_speed.py --threads 2            # SOP-sized: 60,502 × 128, 11,318
    python benchmarks/kmeans_speed.py --skip faiss --markdown kmeans.md

The set is eval_speed.py's synthetic clustered one (``--classes`` Gaussian classes of at least 2
samples, L2-normalised), K = ``--classes``, at most 20 rounds everywhere. Each measurement runs in
a fresh spawned process; ``--repeat R`` runs every row R times, interleaved (row 1, row 2, …,
row 1, …), and the table shows the fastest run (wall time; CPU time is that run's, over all
threads). Ratios are against the floor measured in the same run.

Rows:
* ``floor: 20 × addmm``: 20 times the chunked product ``addmm(‖c‖², x, C.T, alpha=-2)`` of all
  points against K centroids (K distinct points drawn with ``--seed``), ``--rows`` points at a
  time into one reused block, nothing else: what any exact Lloyd k-means computes. Two layouts
  of the block: rows×K, and rows×K' with K' = K rounded up to 64 (aligned rows, the layout our
  assignment uses); the faster one is the floor the ratios use.
* ``floor + argmin``: the same with each block's ``argmin(1)``: a complete assignment pass.
* ``ours, torch``: ``metrics.clustering.kmeans(x, K, backend="torch")``: up to 20 Lloyd rounds
  (the updates and faiss's empty-cluster rule included) and the final nearest-centroid assignment.
* ``ours, faiss``: the same call with ``backend="faiss"``: ``faiss.Kmeans`` with the
  reference's settings, then an ``IndexFlatL2`` assignment.
* ``faiss.Kmeans``: the bare ``train`` with the same settings, and ``train`` + ``assign``.
* ``ours, NMI + F1``: ``metrics.Evaluator(["nmi", "f1"], backend=...)``: the whole metric.

Both k-means stop early at Lloyd's fixed point (faiss 1.15.1: when the objective is unchanged,
its default ``early_stop_threshold=0``; ours: when the assignment is unchanged), so a converging
set takes fewer than 20 rounds. ``passes`` counts the assignment passes (N×K products) a row
made: our ``nearest_centroid`` calls, faiss's iterations and ``assign`` calls; "× floor per
pass" is the row's time per pass over the floor's time per product. Clustering rows print the
NMI of their clusters (computed after the clock stops) as a check that backends agree.
``--rows`` defaults to the block our torch assignment uses (``metrics.clustering.assign_rows``).
"""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import platform
import sys
import time
from collections.abc import Callable
from queue import Empty
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.eval_speed import (  # noqa: E402
    check_set,
    rss_kib,
    set_parser,
    synthetic_set,
    use_threads,
    write_markdown,
)
from utilities.flag_types import positive_int  # noqa: E402

NITER = 20
ALIGN = 64
# A task builds its run (imports, inputs) before the clock starts; the run returns cluster ids
# (checked by NMI afterwards), metric values, or None.
Run = Callable[[], Any]


def _floor(aligned: bool, argmin: bool = False) -> Callable[[dict[str, Any]], Run]:
    def setup(s: dict[str, Any]) -> Run:
        import torch

        x, k, rows = s["x"], s["k"], s["rows"]
        start = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(s["seed"]))
        centroids = x[start[:k]].clone()
        centroid_sq = centroids.pow(2).sum(1)
        width = -(-k // ALIGN) * ALIGN if aligned else k
        block = torch.empty(min(rows, x.shape[0]), width)

        def run() -> None:
            for _ in range(NITER):
                s["passes"][0] += 1
                for chunk in x.split(rows):
                    scores = block[: chunk.shape[0], :k]
                    torch.addmm(centroid_sq, chunk, centroids.T, alpha=-2, out=scores)
                    if argmin:
                        scores.argmin(1)

        return run

    return setup


def _ours_kmeans(backend: str) -> Callable[[dict[str, Any]], Run]:
    def setup(s: dict[str, Any]) -> Run:
        from metrics.clustering import kmeans

        return lambda: kmeans(s["x"], s["k"], seed=s["seed"], backend=backend)

    return setup


def _bare_faiss(assign: bool) -> Callable[[dict[str, Any]], Run]:
    def setup(s: dict[str, Any]) -> Run:
        import faiss

        points = s["x"].numpy()

        def run() -> Any:
            clustering = faiss.Kmeans(
                points.shape[1],
                s["k"],
                niter=NITER,
                seed=s["seed"],
                min_points_per_centroid=1,
                max_points_per_centroid=10**9,
            )
            clustering.train(points)
            return clustering.assign(points)[1] if assign else None

        return run

    return setup


def _ours_metrics(backend: str) -> Callable[[dict[str, Any]], Run]:
    def setup(s: dict[str, Any]) -> Run:
        import metrics

        evaluator = metrics.Evaluator(
            ["nmi", "f1"], kmeans_seed=s["seed"], backend=backend, show_progress=False
        )
        return lambda: evaluator.compute(s["x"], s["y"])

    return setup


TASKS = {
    "floor: 20 × addmm, rows×K block": _floor(aligned=False),
    "floor: 20 × addmm, rows×K' block (K' = K up to 64)": _floor(aligned=True),
    "floor + argmin: 20 × (addmm, argmin), rows×K' block": _floor(aligned=True, argmin=True),
    "ours, torch: kmeans(backend='torch')": _ours_kmeans("torch"),
    "ours, faiss: kmeans(backend='faiss')": _ours_kmeans("faiss"),
    "faiss.Kmeans(niter=20).train": _bare_faiss(assign=False),
    "faiss.Kmeans(niter=20).train + assign": _bare_faiss(assign=True),
    "ours, NMI + F1: Evaluator(backend='torch')": _ours_metrics("torch"),
    "ours, NMI + F1: Evaluator(backend='faiss')": _ours_metrics("faiss"),
}
FLOORS = [name for name in TASKS if name.startswith("floor: ")]
# (row, row it is compared with) besides every row against the floor
PAIRS = [
    ("ours, faiss: kmeans(backend='faiss')", "faiss.Kmeans(niter=20).train"),
    ("ours, faiss: kmeans(backend='faiss')", "faiss.Kmeans(niter=20).train + assign"),
    ("ours, torch: kmeans(backend='torch')", "faiss.Kmeans(niter=20).train + assign"),
    ("ours, NMI + F1: Evaluator(backend='torch')", "ours, torch: kmeans(backend='torch')"),
    ("ours, NMI + F1: Evaluator(backend='faiss')", "ours, faiss: kmeans(backend='faiss')"),
]


def _measure(task: str, settings: dict[str, Any], queue: Any) -> None:
    """Child process: the data, the task's setup, then (wall s, CPU s, passes, peak MiB,
    check)."""
    import torch

    use_threads(settings["threads"])
    x, y = synthetic_set(settings["n"], settings["classes"], settings["dim"], settings["seed"])
    s = dict(settings, x=torch.from_numpy(x), y=torch.from_numpy(y), k=settings["classes"])
    s["passes"] = _count_passes()
    run = TASKS[task](s)
    baseline = rss_kib("VmHWM")
    pathlib.Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS)
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = max(0, rss_kib("VmHWM") - baseline) / 1024
    queue.put((wall, cpu, s["passes"][0], peak, _check(result, s["y"])))


def _count_passes() -> list[int]:
    """A counter of assignment passes (N×K products): every call of our ``nearest_centroid``
    and every iteration of a ``faiss.Kmeans.train`` (each searches all points once), one per
    ``faiss.Kmeans.assign``. Both k-means stop early at Lloyd's fixed point, so it varies."""
    from metrics import clustering

    count = [0]
    nearest_centroid = clustering.nearest_centroid

    def counted(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return nearest_centroid(*args, **kwargs)

    clustering.nearest_centroid = counted
    try:
        import faiss
    except ImportError:
        return count
    train, assign = faiss.Kmeans.train, faiss.Kmeans.assign

    def counted_train(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = train(self, *args, **kwargs)
        count[0] += len(self.iteration_stats)
        return result

    def counted_assign(self: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return assign(self, *args, **kwargs)

    faiss.Kmeans.train, faiss.Kmeans.assign = counted_train, counted_assign
    return count


def _check(result: Any, labels: Any) -> str:
    import torch

    from metrics.nmi import normalized_mutual_information

    if isinstance(result, dict):
        return ", ".join(f"{key} {value:.4f}" for key, value in result.items())
    if result is None:
        return ""
    clusters = torch.as_tensor(np.asarray(result)).reshape(-1).long()
    return f"nmi {normalized_mutual_information(labels, clusters):.4f}"


def _spawn(
    context: Any, name: str, settings: dict[str, Any]
) -> tuple[float, float, int, float, str] | None:
    """One measurement in a fresh process; None (and a line saying so) when it died."""
    queue = context.Queue()
    child = context.Process(target=_measure, args=(name, settings, queue))
    child.start()
    while True:
        try:
            measured = queue.get(timeout=5)
            break
        except Empty:
            if not child.is_alive():
                print(f"{name}: failed (exit code {child.exitcode}), left out", flush=True)
                return None
    child.join()
    return measured


def _default_rows(classes: int) -> int:
    import torch

    from metrics.clustering import assign_rows

    return assign_rows(None, classes, torch.device("cpu"))


def main() -> None:
    parser = set_parser(__doc__.split("\n")[0], "K (SOP test: 11,318)")
    parser.add_argument(
        "--rows", type=positive_int, help="points per block of the floor rows (default: by K)"
    )
    parser.add_argument(
        "--repeat", type=positive_int, default=1, help="runs per row (the fastest shown)"
    )
    args = parser.parse_args()
    check_set(parser, args)
    rows = args.rows or _default_rows(args.classes)
    settings = {k: getattr(args, k) for k in ("n", "classes", "dim", "seed", "threads")}
    settings["rows"] = rows

    import importlib.util

    have_faiss = importlib.util.find_spec("faiss") is not None
    names = [
        name
        for name in TASKS
        if (have_faiss or "faiss" not in name) and not any(part in name for part in args.skip)
    ]
    machine = platform.processor() or platform.machine()
    load_before = os.getloadavg()
    header = (
        f"Synthetic set: {args.n:,} × {args.dim}, K = {args.classes:,} classes, "
        f"{args.threads} CPU thread(s), {rows} points per floor block, {machine}; "
        f"fastest of {args.repeat} run(s) per row."
    )
    print(header, flush=True)
    context = multiprocessing.get_context("spawn")
    results: dict[str, list[tuple[float, float, int, float, str]]] = {name: [] for name in names}
    for _ in range(args.repeat):
        for name in names:
            measured = _spawn(context, name, settings)
            if measured is None:
                continue
            results[name].append(measured)
            wall, cpu, passes, peak, check = measured
            line = f"{name:52s} {wall:7.2f} s {cpu:7.2f} s CPU {passes:3d} passes {peak:5.0f} MiB"
            print(f"{line} {check}", flush=True)
    best = {name: min(runs) for name, runs in results.items() if runs}
    table = _table(header, best, os.getloadavg(), load_before)
    print("\n" + table)
    write_markdown(args.markdown, table)


def _table(
    header: str,
    best: dict[str, tuple[float, float, int, float, str]],
    load_after: tuple[float, float, float],
    load_before: tuple[float, float, float],
) -> str:
    floors = [name for name in FLOORS if name in best]
    floor = min(floors, key=lambda name: best[name][0]) if floors else None
    load = " → ".join(" ".join(f"{v:.2f}" for v in avg) for avg in (load_before, load_after))
    lines = [
        header,
        f"Load average (1, 5, 15 min) before → after: {load}.",
        "",
        "| measurement | time (s) | CPU (s) | passes | × floor | × floor per pass | peak MiB "
        "| check |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, (wall, cpu, passes, peak, check) in best.items():
        ratio = per_pass = "–"
        if floor:
            ratio = f"{wall / best[floor][0]:.2f}"
            per_pass = f"{wall / passes / (best[floor][0] / NITER):.2f}" if passes else "–"
        lines.append(
            f"| {name} | {wall:.2f} | {cpu:.2f} | {passes} | {ratio} | {per_pass} | {peak:.0f} "
            f"| {check} |"
        )
    if floor:
        lines += ["", f"Floor: {floor} ({best[floor][0]:.2f} s)."]
    pairs = [(a, b) for a, b in PAIRS if a in best and b in best]
    if pairs:
        lines += ["", "| ratio | time |", "|---|---|"]
        lines += [f"| {a} / {b} | {best[a][0] / best[b][0]:.2f} |" for a, b in pairs]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
