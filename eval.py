"""Evaluate a checkpoint, or precomputed embeddings, on the test split.

    python eval.py --test_path RUN/checkpoint_last.pth --output R.json
    python eval.py --embeddings E.npz --evaluation_metrics e_recall@1 mAP_R nmi --output R.json
    python eval.py --test_path CKPT --attack CA:pm=+:W=1:eps=0.30196:alpha=0.011764:pgditer=32
    python eval.py --test_path CKPT --swipe rob28        # writes CKPT.rob28.json, prints the ERS
    python eval.py --ers CKPT.rob28.json                 # scores any rob28/rob224 swipe file

A checkpoint carries its options, so the model and the test data are rebuilt from it: nothing is
repeated on the command line. An ``.npz`` file holds ``embeddings`` (N×D), ``labels`` (N),
optionally boolean ``query`` and ``gallery`` masks (both) for the query/gallery protocol and
optionally ``uncertainty`` (N×D', an IDML model's uncertainty embeddings; never scored).
The JSON output maps each metric key to its value. With ``--attack`` (repeatable) or ``--swipe``
the checkpoint's test split is attacked instead (robrank's attack strings and swipe profiles,
``attacks/``); the swipe JSON is robrank's ``{attack_string: [benign, adversarial]}``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

import architectures
import datasets
import metrics
from attacks import parse_attack_string
from attacks.profiles import PROFILES, profile
from attacks.runner import AttackRunner
from metrics.ers import (
    ERS_PROFILES,
    SUBSET_KEY,
    ers_score,
    ers_terms,
    format_ers_table,
    read_swipe,
)
from parameters import DEFAULT_METRICS, DefaultsHelpFormatter, OneLineErrorParser
from utilities.checkpoint import load_checkpoint, options_from_checkpoint, restore, split_size
from utilities.device import select_device
from utilities.embedding import embed_outputs, score_embeddings
from utilities.embedding_files import read_embeddings, write_embeddings
from utilities.errors import ConfigError, one_line
from utilities.flag_types import nonnegative_int, positive_int
from utilities.outputs import check_writable, save_result
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
    source.add_argument(
        "--embeddings", help=".npz with embeddings, labels[, query, gallery, uncertainty]"
    )
    source.add_argument(
        "--ers", metavar="SWIPE.json", help="print the ERS of a rob28/rob224 swipe JSON file"
    )
    parser.add_argument(
        "--evaluation_metrics",
        nargs="+",
        default=None,
        help="metric keys (default: the checkpoint's, or the standard set for --embeddings)",
    )
    parser.add_argument("--output", default=None, help="write the metrics as JSON here")
    parser.add_argument(
        "--save_embeddings",
        metavar="E.npz",
        default=None,
        help="with --test_path: also write the test split's embeddings, labels and query/gallery "
        "masks here, in the --embeddings format; for a model trained with --idml also its "
        "uncertainty embeddings, as 'uncertainty' (one row per embedding; the metrics use the "
        "embeddings only)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--gpu", type=nonnegative_int, nargs="+", default=[0], help="GPU index for auto"
    )
    parser.add_argument("--source_path", default=None, help="override the dataset parent folder")
    parser.add_argument("--bs", type=positive_int, default=None, help="batch size for embedding")
    parser.add_argument(
        "--num_workers",
        "--kernels",
        dest="num_workers",
        type=nonnegative_int,
        default=None,
        help="workers",
    )
    parser.add_argument(
        "--seed",
        type=nonnegative_int,
        default=None,
        help="seed of k-means and attacks (default: the checkpoint's; 0 for --embeddings)",
    )
    attack = parser.add_argument_group("adversarial ranking attacks (with --test_path)")
    attack.add_argument(
        "--attack",
        action="append",
        default=None,
        metavar="STRING",
        help="attack string, repeatable, e.g. CA:pm=+:W=1:eps=0.30196:alpha=0.011764:pgditer=32",
    )
    attack.add_argument("--swipe", choices=list(PROFILES), default=None, help="attack profile")
    attack.add_argument(
        "--attack_compat",
        choices=["robrank"],
        default=None,
        help="reproduce robrank's quirks (GTM selector, LTM self-mask, ES:D at the penultimate "
        "iterate, mean of batch means) to compare with published numbers",
    )
    attack.add_argument(
        "--attack_metric",
        choices=["N", "E", "C"],
        default="N",
        help="distance of the attacks: N normalised Euclidean, E Euclidean, C cosine",
    )
    attack.add_argument(
        "--attack_bs",
        type=positive_int,
        default=None,
        help="attack batch (default 128 for 28 px, else 112)",
    )
    attack.add_argument(
        "--attack_batches", type=positive_int, default=None, help="attack only the first N batches"
    )
    return parser


def load_checkpoint_split(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """(opt, model on its device, test split, device) rebuilt from ``--test_path``."""
    payload = load_checkpoint(args.test_path, "--test_path")
    opt = options_from_checkpoint(payload)
    opt.not_pretrained = True  # the checkpoint holds every weight
    for name in ("source_path", "bs", "num_workers", "seed"):
        if getattr(args, name) is not None:
            setattr(opt, name, getattr(args, name))
    opt.device, opt.gpu = args.device, args.gpu
    device = select_device(opt)
    data = datasets.build(opt, architectures.input_spec(opt.arch))
    stored = payload.get("data", {}).get("Test")
    classes = split_size(data.test)["classes"]
    if stored and stored.get("classes") != classes:
        raise ConfigError(
            f"--source_path: the test split of {opt.dataset} at {opt.source_path} has "
            f"{classes} classes ({len(data.test)} images); {args.test_path} was evaluated on "
            f"{stored.get('classes')} ({stored.get('samples')} images); expected the same data"
        )
    model = architectures.build(opt)
    restore(model, payload["model"], "model", args.test_path, "--test_path")
    model.to(device)
    print(
        f"{args.test_path}: {opt.dataset} test split, {len(data.test)} images, epoch "
        f"{payload['epoch']}"
    )
    return opt, model, data.test, device


def evaluate_checkpoint(args: argparse.Namespace) -> dict[str, float | list[float]]:
    """The metrics of the checkpoint's test split; with ``--save_embeddings`` its embeddings,
    labels, query/gallery masks and (IDML model) uncertainty embeddings are written first, in the
    ``--embeddings`` format."""
    opt, model, test, device = load_checkpoint_split(args)
    evaluator = metrics.Evaluator(
        args.evaluation_metrics or opt.evaluation_metrics, kmeans_seed=opt.seed
    )
    with_uncertainty = bool(args.save_embeddings) and model.uncertainty_head is not None
    outputs = embed_outputs(
        model,
        test,
        ("embeds", "uncertainty") if with_uncertainty else ("embeds",),
        batch_size=opt.bs,
        num_workers=opt.num_workers,
        device=device,
        precision=Precision(opt.amp, device),
        description="embedding Test",
    )
    embeds = outputs["embeds"]
    if args.save_embeddings:
        arrays = {"embeddings": embeds.cpu().numpy(), "labels": np.asarray(test.labels)}
        if with_uncertainty:
            arrays["uncertainty"] = outputs["uncertainty"].cpu().numpy()
        if test.query is not None:
            arrays.update(query=np.asarray(test.query), gallery=np.asarray(test.gallery))
        save_result(
            args.save_embeddings,
            lambda target: write_embeddings(target, arrays),
            "--save_embeddings",
        )
        extra = " and uncertainty embeddings" if with_uncertainty else ""
        print(f"Wrote {args.save_embeddings} ({len(embeds)} embeddings{extra})")
    return score_embeddings(evaluator, embeds, test, model, with_arrays=True)


def evaluate_embeddings(args: argparse.Namespace) -> dict[str, float | list[float]]:
    """Every metric of ``--evaluation_metrics`` on the arrays of ``--embeddings``, computed on
    ``--device`` (a GPU when present) with ``--seed`` (default 0) seeding k-means."""
    embeddings, labels, query, gallery, _ = read_embeddings(args.embeddings)  # no uncertainty
    evaluator = metrics.Evaluator(
        args.evaluation_metrics or DEFAULT_METRICS,
        kmeans_seed=args.seed if args.seed is not None else 0,
    )
    device = select_device(args)
    print(
        f"{args.embeddings}: {embeddings.shape[0]} embeddings of dimension {embeddings.shape[1]}, "
        f"metrics on {device}"
    )
    return evaluator.compute(
        torch.from_numpy(embeddings).to(device),
        torch.from_numpy(labels).to(device),
        query=query,
        gallery=gallery,
        with_arrays=True,
    )


def swipe_path(args: argparse.Namespace) -> pathlib.Path:
    """``<checkpoint>.<profile>.json``; a swipe of the first N batches only goes to
    ``<checkpoint>.<profile>.first<N>.json``, so it never replaces a full swipe's file."""
    subset = f".first{args.attack_batches}" if args.attack_batches else ""
    return pathlib.Path(f"{args.test_path}.{args.swipe}{subset}.json")


def attack_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``--attack`` strings or the ``--swipe`` profile on the checkpoint's test split."""
    strings = profile(args.swipe) if args.swipe else list(args.attack)
    for string in strings:  # a bad string fails before the checkpoint is loaded
        parse_attack_string(string)
    if args.swipe:
        check_writable(swipe_path(args), "--swipe")
    opt, model, test, device = load_checkpoint_split(args)
    size = architectures.input_spec(opt.arch).size
    batch_size = args.attack_bs or (128 if size <= 28 else 112)
    runner = AttackRunner(
        model,
        test,
        device=device,
        batch_size=batch_size,
        num_workers=opt.num_workers,
        seed=opt.seed,
        metric=args.attack_metric,
        compat=args.attack_compat == "robrank",
        max_batches=args.attack_batches,
        dataset_name=opt.dataset,
    )

    def report(number: int, string: str, outcome: tuple[dict, dict]) -> None:
        shown = "  ".join(f"{k} {outcome[0][k]:.4f} -> {v:.4f}" for k, v in outcome[1].items())
        print(f"[{number + 1}/{len(strings)}] {string}: {shown}", flush=True)

    results: dict[str, Any] = runner.swipe(strings, report)
    print(format_attack_table(results))
    if args.attack_batches:  # recorded, so a subset is never mistaken for the whole split
        results[SUBSET_KEY] = {"attack_batches": args.attack_batches, "attack_bs": batch_size}
    if args.swipe:
        terms = ers_terms(results, "the swipe") if args.swipe in ERS_PROFILES else None
        path = swipe_path(args)
        try:
            save_result(path, lambda target: write_json(target, results), "--swipe")
            print(f"Wrote {path}")
        finally:  # the score is printed, last, even when the file went to a fallback path
            if terms is not None:
                print(format_ers_table(terms))
    return results


def format_attack_table(results: dict[str, list[dict[str, float]]]) -> str:
    """One row per attack string and reported key: benign and adversarial value."""
    rows = [
        (s, k, v[0].get(k, float("nan")), a) for s, v in results.items() for k, a in v[-1].items()
    ]
    width = max([len(s) for s, *_ in rows] + [6])
    key_width = max([len(k) for _, k, *_ in rows] + [3])
    lines = [f"{'attack':<{width}}  {'key':<{key_width}}  {'benign':>9}  {'adversarial':>11}"]
    lines += [f"{s:<{width}}  {k:<{key_width}}  {b:>9.4f}  {a:>11.4f}" for s, k, b, a in rows]
    return "\n".join(lines)


def score_swipe_file(args: argparse.Namespace) -> float:
    """Print the ERS table of ``--ers SWIPE.json``; the ERS."""
    swipe = read_swipe(args.ers)
    terms = ers_terms(swipe, args.ers)
    if SUBSET_KEY in swipe:  # before the table, whose last line is the score
        subset = swipe[SUBSET_KEY]
        print(f"(a partial swipe: the first {subset.get('attack_batches')} batches of "
              f"{subset.get('attack_bs')} items of the split)")  # fmt: skip
    print(format_ers_table(terms))
    return ers_score(terms)


def format_table(results: dict[str, float | list[float]]) -> str:
    """One line per metric; an array-valued one (``rho_spectrum@0``) shows its length."""
    width = max(len(name) for name in results)
    return "\n".join(
        f"{name:<{width}}  "
        + (
            f"{value:.4f}"
            if isinstance(value, float)
            else f"[{len(value)} values; --output writes them]"
        )
        for name, value in results.items()
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    attacking = bool(args.attack or args.swipe)
    try:
        if attacking and not args.test_path:
            raise ConfigError("--attack/--swipe: attacks need a checkpoint; give --test_path")
        if args.attack and args.swipe:
            raise ConfigError("--attack/--swipe: give attack strings or a profile, not both")
        if args.save_embeddings and (not args.test_path or attacking):
            raise ConfigError(
                "--save_embeddings: writes the embeddings of a --test_path checkpoint's test "
                "split; give --test_path (and no --attack/--swipe)"
            )
        for flag in ("--output", "--save_embeddings"):
            if getattr(args, flag[2:]):
                check_writable(getattr(args, flag[2:]), flag)
        if args.ers:
            score_swipe_file(args)
            return 0
        if attacking:
            attack_results = attack_checkpoint(args)
            write_output(args, attack_results)
            return 0
        if args.evaluation_metrics:
            metrics.build_metrics(args.evaluation_metrics)
        results = evaluate_embeddings(args) if args.embeddings else evaluate_checkpoint(args)
        print(format_table(results))
        write_output(args, results)
    except ConfigError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written (eval.py writes its results at the end)",
              file=sys.stderr)  # fmt: skip
        return 130
    return 0


def write_output(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """``--output`` as strict JSON (a fallback copy, named in the error, if it cannot be)."""
    if args.output:
        save_result(args.output, lambda target: write_json(target, results), "--output")
        print(f"Wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
