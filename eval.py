"""Evaluate a checkpoint, or precomputed embeddings, on the test split.

    python eval.py --test_path RUN/checkpoint_last.pth --output R.json
    python eval.py --embeddings E.npz --evaluation_metrics e_recall@1 mAP_R nmi --output R.json

A checkpoint carries its options, so the model and the test data are rebuilt from it: nothing is
repeated on the command line. An ``.npz`` file holds ``embeddings`` (N×D), ``labels`` (N) and
optionally boolean ``query`` and ``gallery`` masks (both) for the query/gallery protocol.
The JSON output maps each metric key to its value.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

import numpy as np

import architectures
import datasets
import metrics
from parameters import DEFAULT_METRICS, DefaultsHelpFormatter, OneLineErrorParser
from utilities.checkpoint import load_checkpoint, options_from_checkpoint
from utilities.device import select_device
from utilities.embedding import evaluate_dataset
from utilities.errors import ConfigError, one_line
from utilities.precision import Precision
from utilities.run_setup import write_json


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="eval.py",
        description="Evaluate a checkpoint or precomputed embeddings.",
        formatter_class=DefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--test_path", help="checkpoint written by main.py")
    source.add_argument("--embeddings", help=".npz with embeddings, labels[, query, gallery]")
    parser.add_argument(
        "--evaluation_metrics",
        nargs="+",
        default=None,
        help="metric keys (default: the checkpoint's, or the standard set for --embeddings)",
    )
    parser.add_argument("--output", default=None, help="write the metrics as JSON here")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--gpu", type=int, nargs="+", default=[0], help="GPU index for auto")
    parser.add_argument("--source_path", default=None, help="override the dataset parent folder")
    parser.add_argument("--bs", type=int, default=None, help="batch size for embedding")
    parser.add_argument(
        "--num_workers", "--kernels", dest="num_workers", type=int, default=None, help="workers"
    )
    return parser


def evaluate_checkpoint(args: argparse.Namespace) -> dict[str, float]:
    payload = load_checkpoint(args.test_path, "--test_path")
    opt = options_from_checkpoint(payload)
    opt.not_pretrained = True  # the checkpoint holds every weight
    for name in ("source_path", "bs", "num_workers"):
        if getattr(args, name) is not None:
            setattr(opt, name, getattr(args, name))
    opt.device, opt.gpu = args.device, args.gpu
    device = select_device(opt)
    evaluator = metrics.Evaluator(
        args.evaluation_metrics or opt.evaluation_metrics, kmeans_seed=opt.seed
    )
    data = datasets.build(opt, architectures.input_spec(opt.arch))
    model = architectures.build(opt)
    model.load_state_dict(payload["model"])
    model.to(device)
    print(
        f"{args.test_path}: {opt.dataset} test split, {len(data.test)} images, epoch "
        f"{payload['epoch']}"
    )
    return evaluate_dataset(
        evaluator,
        model,
        data.test,
        batch_size=opt.bs,
        num_workers=opt.num_workers,
        device=device,
        precision=Precision(opt.amp, device),
        name="Test",
    )


def evaluate_embeddings(args: argparse.Namespace) -> dict[str, float]:
    path = pathlib.Path(args.embeddings)
    if not path.is_file():
        raise ConfigError(f"--embeddings: no file at {path}")
    try:
        content = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ConfigError(f"--embeddings: {path} is not a readable .npz file ({error})") from error
    missing = {"embeddings", "labels"} - set(content.files)
    if missing:
        raise ConfigError(
            f"--embeddings: {path} lacks {', '.join(sorted(missing))}; expected arrays "
            "'embeddings' (N×D), 'labels' (N) and optional boolean 'query', 'gallery'"
        )
    embeddings, labels = content["embeddings"], content["labels"]
    if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
        raise ConfigError(
            f"--embeddings: {path} has embeddings {embeddings.shape} and labels {labels.shape}; "
            "expected N×D and (N,)"
        )
    masks = {key: content[key] for key in ("query", "gallery") if key in content.files}
    if len(masks) == 1:
        raise ConfigError(f"--embeddings: {path} has only '{next(iter(masks))}'; give both masks")
    for key, mask in masks.items():
        if mask.dtype != np.bool_ or mask.shape != labels.shape:
            raise ConfigError(
                f"--embeddings: '{key}' in {path} is {mask.dtype} {mask.shape}; expected bool "
                f"({labels.shape[0]},)"
            )
    evaluator = metrics.Evaluator(args.evaluation_metrics or DEFAULT_METRICS)
    print(f"{path}: {embeddings.shape[0]} embeddings of dimension {embeddings.shape[1]}")
    return evaluator.compute(
        embeddings.astype(np.float32),
        labels,
        query=masks.get("query"),
        gallery=masks.get("gallery"),
    )


def format_table(results: dict[str, float]) -> str:
    width = max(len(name) for name in results)
    return "\n".join(f"{name:<{width}}  {value:.4f}" for name, value in results.items())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.evaluation_metrics:
            metrics.build_metrics(args.evaluation_metrics)
        results = evaluate_embeddings(args) if args.embeddings else evaluate_checkpoint(args)
    except ConfigError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    print(format_table(results))
    if args.output:
        write_json(pathlib.Path(args.output), results)
        print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
