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
overhead; the goal is <= 1.2. Wall-clock and process CPU time are both measured; on the CPU
(default one torch thread, ``--threads``) the CPU-time ratio is the one to read on a shared,
loaded machine, since waiting for a core counts in the wall clock only.
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
from metrics.ers import ERS_PROFILES, ers_score, ers_terms  # noqa: E402


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


class Clock:
    """Wall-clock and process CPU seconds of a block (after synchronising the device)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> Clock:
        synchronise(self.device)
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        synchronise(self.device)
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


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
    runner = AttackRunner(
        model,
        test,
        device=device,
        batch_size=batch_size,
        seed=opt.seed,
        max_batches=args.batches,
        dataset_name=opt.dataset,
        progress=False,
    )
    loader = runner._loader()
    batches = [images.to(device) for images, _, _ in loader][: args.batches or None]
    items = sum(len(b) for b in batches)

    with Clock(device) as candidates:
        runner.candidates()  # the clean candidate set: once per swipe
    rows, swipe = [], {}
    for string in profile(args.profile):
        spec = attacks.parse_attack_string(string)
        with Clock(device) as attack:
            swipe[string] = list(runner.run(string))
        with Clock(device) as bare:
            bare_passes(model, batches, spec.pgditer + 1)
        rows.append({"attack": string, "swipe_wall_s": attack.wall, "bare_wall_s": bare.wall,
                     "swipe_cpu_s": attack.cpu, "bare_cpu_s": bare.cpu})  # fmt: skip
        print(f"{string:<52} swipe {attack.wall:7.2f} s wall {attack.cpu:7.2f} s CPU | bare "
              f"{bare.wall:7.2f} s wall {bare.cpu:7.2f} s CPU", flush=True)  # fmt: skip
    totals = {}
    for clock in ("wall", "cpu"):
        spent = getattr(candidates, clock) + sum(r[f"swipe_{clock}_s"] for r in rows)
        bare = sum(r[f"bare_{clock}_s"] for r in rows)
        totals.update({f"swipe_{clock}_s": spent, f"bare_{clock}_s": bare,
                       f"ratio_{clock}": spent / bare})  # fmt: skip
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
        **totals,
        "ers": ers_score(ers_terms(swipe)) if args.profile in ERS_PROFILES else None,
        "attacks": rows,
        "swipe": swipe,
    }
    print(f"{args.profile} on {items} {opt.dataset} test images ({opt.arch}, batch {batch_size}, "
          f"{device}, {torch.get_num_threads()} thread(s))")  # fmt: skip
    for clock in ("wall", "cpu"):
        print(
            f"  {clock:>4}: swipe {totals[f'swipe_{clock}_s']:.1f} s, bare forward+backward "
            f"{totals[f'bare_{clock}_s']:.1f} s, ratio {totals[f'ratio_{clock}']:.3f}"
        )
    if result["ers"] is not None:
        print(f"  ERS {result['ers']:.1f}")
    if args.output:
        pathlib.Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main_()
