"""Proxy-Anchor, IDML-PA and DADA-PA on ``digits``: R@1, MAP@R and NMI after the same epochs
from the same seeds, and seconds per epoch.

    python benchmarks/methods_digits.py                          # the README table
    python benchmarks/methods_digits.py --epochs 2 --seeds 0     # a smoke run

Every row is one ``main.py`` run per seed on the bundled 8×8 digits (upsampled to 28×28; 1,201
training and 596 test images) with the digits defaults (C2F2, 128-d L2-normalised embeddings,
SPC-2 batches of ``--bs``, Adam at lr 1e-3), the Proxy-Anchor loss at its defaults (α 32, δ 0.1,
proxies at lr × 100) and the test metrics of the last epoch (no model selection):

- ``PA``: Proxy-Anchor alone;
- ``IDML-PA``: ``--idml --input_mixup`` (the uncertainty head trains, our default);
- ``IDML-PA (reference)``: with ``--loss_idml_normalize_uncertainty`` as well (d_u ≡ 1, the
  head gets no gradient, what the published IDML numbers used);
- ``DADA-PA``: ``--loss dadaproxy`` at the reference defaults (its first epoch trains only the
  discriminators, ``d_warmup`` 1).

The digits are far too easy and small to show the papers' gains (R@1 is near its ceiling after a
few epochs); the table shows that each method trains end to end, what it costs per epoch, and
that none of them breaks a baseline that already works.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import main  # noqa: E402
from utilities.files import atomic_write_text  # noqa: E402

IDML = ["--loss", "proxy_anchor", "--idml", "--input_mixup"]
METHODS = {
    "PA": ["--loss", "proxy_anchor"],
    "IDML-PA": IDML,
    "IDML-PA (reference)": [*IDML, "--loss_idml_normalize_uncertainty"],
    "DADA-PA": ["--loss", "dadaproxy"],
}
METRICS = {"R@1": "e_recall@1", "MAP@R": "mAP_R", "NMI": "nmi"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=15, help="training epochs of every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--bs", type=int, default=112)
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    return parser.parse_args(argv)


def run(method: str, seed: int, args: argparse.Namespace, root: str) -> dict[str, float]:
    flags = [*METHODS[method], "--seed", str(seed), "--n_epochs", str(args.epochs),
             "--bs", str(args.bs), "--num_workers", "0", "--no_train_metrics",
             "--evaluation_metrics", *METRICS.values(), "--save_path", root,
             "--savename", f"{method.replace(' ', '_')}_s{seed}"]  # fmt: skip
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        final = main.train(flags)
    return {**final, "s/epoch": (time.perf_counter() - started) / args.epochs}


def table(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    def cell(values: list[float], scale: float) -> str:
        mean = statistics.fmean(values) * scale
        spread = statistics.pstdev(values) * scale if len(values) > 1 else 0.0
        return f"{mean:.1f} ± {spread:.1f}"

    lines = [
        f"{len(args.seeds)} seeds ({', '.join(map(str, args.seeds))}), {args.epochs} epochs, "
        f"batch {args.bs}; test metrics of the last epoch, mean ± population std",
        "",
        "| Method | R@1 | MAP@R | NMI | s/epoch |",
        "|---|---|---|---|---|",
    ]
    for method, runs in results.items():
        metrics = [cell([r[key] for r in runs], 100) for key in METRICS.values()]
        seconds = statistics.fmean(r["s/epoch"] for r in runs)
        lines.append(f"| {method} | {' | '.join(metrics)} | {seconds:.1f} |")
    return "\n".join(lines)


def main_cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as root:
        for method in args.methods:
            for seed in args.seeds:
                values = run(method, seed, args, root)
                results.setdefault(method, []).append(values)
                print(f"{method} seed {seed}: {json.dumps(values)}", file=sys.stderr)
    text = table(results, args)
    print(text)
    if args.markdown:
        atomic_write_text(pathlib.Path(args.markdown), text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main_cli())
