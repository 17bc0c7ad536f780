"""Time of a swipe profile (default ``rob28``, the nine ERS attacks) on a checkpoint's test
split, against the bare forward + backward passes the same attacks need.

    python benchmarks/attack_speed.py                          # trains c2f2 on digits first
    python benchmarks/attack_speed.py --checkpoint RUN/checkpoint_last.pth --device cuda

Without ``--checkpoint`` a c2f2 is trained on ``digits`` for ``--epochs`` epochs (seconds) in a
temporary folder. Every attack string of the profile is run by :class:`attacks.runner.AttackRunner`
exactly as ``eval.py --swipe`` runs it (targets, benign and adversarial evaluation, PGD), and,
interleaved with it attack by attack so that load on the machine affects both alike, the bare
cost: (pgditer + 1) passes of forward + backward (input gradient only) over the same items in
the same batches, images already in memory. The ratio swipe / bare is the attack machinery's
overhead; the goal is <= 1.2. On the CPU the default is one torch thread (``--threads``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import tempfile
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import architectures  # noqa: E402
import attacks  # noqa: E402
import eval as eval_cli  # noqa: E402
import main  # noqa: E402
from attacks.profiles import PROFILES, profile  # noqa: E402
from attacks.runner import AttackRunner  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="main.py checkpoint (default: train)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the c2f2 trained here")
    parser.add_argument("--profile", choices=list(PROFILES), default="rob28")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--bs", type=int, default=None, help="attack batch (default 128 / 112)")
    parser.add_argument("--batches", type=int, default=None, help="only the first N batches")
    parser.add_argument("--output", default=None, help="write the measurements as JSON here")
    return parser.parse_args(argv)


def train_checkpoint(folder: pathlib.Path, epochs: int) -> pathlib.Path:
    main.train(
        ["--dataset", "digits", "--n_epochs", str(epochs), "--no_train_metrics",
         "--num_workers", "0", "--save_path", str(folder), "--savename", "bench",
         "--evaluation_metrics", "e_recall@1"]
    )  # fmt: skip
    return folder / "digits" / "bench" / "checkpoint_last.pth"


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_passes(model: torch.nn.Module, batches: list[torch.Tensor], passes: int) -> None:
    """``passes`` forward + backward passes (gradient of the embeddings' sum w.r.t. the images)
    over every batch: the irreducible cost of ``passes`` PGD steps."""
    for images in batches:
        for _ in range(passes):
            x = images.detach().requires_grad_(True)
            (gradient,) = torch.autograd.grad(model(x)["embeds"].float().sum(), x)
            del gradient


def main_(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint or train_checkpoint(pathlib.Path(scratch), args.epochs)
        eval_args = eval_cli.build_parser().parse_args(
            ["--test_path", str(checkpoint), "--device", args.device, "--num_workers", "0"]
        )
        opt, model, test, device = eval_cli.load_checkpoint_split(eval_args)
    model.eval()
    size = architectures.input_spec(opt.arch).size
    batch_size = args.bs or (128 if size <= 28 else 112)
    runner = AttackRunner(model, test, device=device, batch_size=batch_size, seed=opt.seed,
                          max_batches=args.batches, dataset_name=opt.dataset, progress=False)  # fmt: skip
    loader = runner._loader()
    batches = [images.to(device) for images, _, _ in loader][: args.batches or None]
    items = sum(len(b) for b in batches)

    start = time.perf_counter()
    runner.candidates()  # the clean candidate set: once per swipe
    synchronise(device)
    candidates_s = time.perf_counter() - start
    rows = []
    for string in profile(args.profile):
        spec = attacks.parse_attack_string(string)
        synchronise(device)
        start = time.perf_counter()
        runner.run(string)
        synchronise(device)
        attack_s = time.perf_counter() - start
        start = time.perf_counter()
        bare_passes(model, batches, spec.pgditer + 1)
        synchronise(device)
        bare_s = time.perf_counter() - start
        rows.append({"attack": string, "swipe_s": attack_s, "bare_s": bare_s})
        print(f"{string:<52} swipe {attack_s:8.2f} s  bare {bare_s:8.2f} s  "
              f"ratio {attack_s / bare_s:5.2f}", flush=True)  # fmt: skip
    swipe_s = candidates_s + sum(r["swipe_s"] for r in rows)
    bare_s = sum(r["bare_s"] for r in rows)
    result = {
        "profile": args.profile,
        "checkpoint": str(args.checkpoint or f"c2f2 trained {args.epochs} epochs on digits"),
        "arch": opt.arch,
        "dataset": opt.dataset,
        "items": items,
        "batch_size": batch_size,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "candidates_s": candidates_s,
        "swipe_s": swipe_s,
        "bare_s": bare_s,
        "ratio": swipe_s / bare_s,
        "attacks": rows,
    }
    print(f"{args.profile} on {items} {opt.dataset} test images ({opt.arch}, batch {batch_size}, "
          f"{device}, {torch.get_num_threads()} thread(s)): swipe {swipe_s:.1f} s, bare "
          f"forward+backward {bare_s:.1f} s, ratio {swipe_s / bare_s:.3f}")  # fmt: skip
    if args.output:
        pathlib.Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main_()
