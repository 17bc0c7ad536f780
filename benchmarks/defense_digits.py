"""Adversarial-training defenses on ``digits``: benign metrics, the ``rob28`` swipe and its ERS,
training time per epoch, and the cost of one defended step against η+1 standard steps.

    python benchmarks/defense_digits.py                        # the README table (about 2 h)
    python benchmarks/defense_digits.py --epochs 2 --pgditer 4 --attack_batches 1   # a smoke run

Every row is a robrank command string run by ``main.py`` on digits (``-C mnist:rc2f2...`` then
``--dataset digits``): C2F2, 512-d embeddings, metric N, SPC-2 batches of ``--bs`` images, Adam
1e-3, the same seed and epochs for every row; the defenses none, EST (``rc2f2d``), ACT
(``rc2f2p``), HM[S,g_LGA] (``rc2f2ghmetsm``) and HM[S,g_LGA]&ICS (``rc2f2ghmetsmi``), each
with the triplet loss (``ptripletN``) and the margin loss (``pmarginN``). Each trained model is
swiped with ``rob28`` exactly as ``eval.py --swipe rob28`` does (``--attack_batches`` for a
subset) and the table is printed in the layout of robrank's README: R@1, R@2, mAP (``mAP_R``
stands in for robrank's full-ranking mAP), NMI, the ten ERS terms, ERS, seconds per epoch.

The timing part builds each defense's step on a fresh model and times, interleaved batch by
batch so that machine load affects both alike, one defended step against η+1 standard steps
(``--defense none``, same loss, a separate copy of the model) on the same ``--timing_batches``
batches; HM runs without its early stop, so every step pays all η iterations. Process CPU time
with one torch thread (``--threads``) is the figure to read on a shared machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import architectures  # noqa: E402
import criteria  # noqa: E402
import datasampler  # noqa: E402
import datasets  # noqa: E402
import defenses  # noqa: E402
import main  # noqa: E402
import parameters  # noqa: E402
from attacks.profiles import profile  # noqa: E402
from attacks.runner import AttackRunner  # noqa: E402
from metrics.ers import ERS_TERMS, ers_score, ers_terms  # noqa: E402
from utilities.checkpoint import load_checkpoint  # noqa: E402
from utilities.files import atomic_write_text  # noqa: E402
from utilities.optimization import build_optimizer  # noqa: E402
from utilities.precision import Precision  # noqa: E402

DEFENSES = {  # row name -> robrank model suffix
    "none": "",
    "EST": "d",
    "ACT": "p",
    "HM[S,g_LGA]": "ghmetsm",
    "HM[S,g_LGA]&ICS": "ghmetsmi",
}
LOSSES = {"triplet": "ptripletN", "margin": "pmarginN"}
BENIGN = {"R@1": "e_recall@1", "R@2": "e_recall@2", "mAP": "mAP_R", "NMI": "nmi"}
TARGET_ROWS = ("ACT", "HM[S,g_LGA]&ICS")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=16, help="training epochs of every row")
    parser.add_argument("--pgditer", type=int, default=32, help="η of the defenses")
    parser.add_argument("--bs", type=int, default=112, help="training batch (SPC-2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--losses", nargs="+", choices=list(LOSSES), default=list(LOSSES))
    parser.add_argument("--defenses", nargs="+", choices=list(DEFENSES), default=list(DEFENSES))
    parser.add_argument("--attack_batches", type=int, default=None, help="swipe a subset")
    parser.add_argument("--timing_batches", type=int, default=3)
    parser.add_argument("--timing_rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the timing")
    parser.add_argument("--skip_training", action="store_true", help="only the timing part")
    parser.add_argument("--skip_timing", action="store_true", help="only the table")
    parser.add_argument("--save_path", default=None, help="keep the runs here (default: temp)")
    parser.add_argument("--output", default=None, help="write every measurement as JSON here")
    return parser.parse_args(argv)


def row_flags(defense: str, loss: str, args: argparse.Namespace) -> list[str]:
    return ["-C", f"mnist:rc2f2{DEFENSES[defense]}:{LOSSES[loss]}", "--dataset", "digits",
            "--bs", str(args.bs), "--n_epochs", str(args.epochs), "--seed", str(args.seed),
            "--defense_pgditer", str(args.pgditer), "--num_workers", "0"]  # fmt: skip


def train_and_swipe(defense: str, loss: str, args: argparse.Namespace, root: pathlib.Path) -> dict:
    name = f"{loss}-{defense}".replace("[", "").replace("]", "").replace(",", "-")
    flags = row_flags(defense, loss, args)
    final = main.train([*flags, "--save_path", str(root), "--savename", name])
    checkpoint = root / "digits" / name / "checkpoint_last.pth"
    payload = load_checkpoint(checkpoint, "--test_path")
    opt = argparse.Namespace(**payload["options"])
    model = architectures.build(opt)
    model.load_state_dict(payload["model"])
    test = datasets.build(opt, architectures.input_spec(opt.arch)).test
    runner = AttackRunner(model, test, device=torch.device("cpu"), batch_size=128,
                          seed=opt.seed, max_batches=args.attack_batches,
                          dataset_name=opt.dataset, progress=False)  # fmt: skip
    swipe = runner.swipe(profile("rob28"))
    swipe_file = checkpoint.parent / "checkpoint_last.pth.rob28.json"
    atomic_write_text(swipe_file, json.dumps(swipe) + "\n")
    terms = ers_terms(swipe)
    times = payload["history"]["Train"]["time"]
    return {
        "loss": loss,
        "defense": defense,
        "command": " ".join(flags),
        "benign": {column: final[key] for column, key in BENIGN.items()},
        "terms": {term: raw for term, (raw, _) in terms.items()},
        "ers": ers_score(terms),
        "seconds_per_epoch": statistics.mean(times),
    }


def format_table(rows: list[dict]) -> str:
    head = ["Loss", "Defense", *BENIGN, *ERS_TERMS, "ERS", "s/epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        benign = [f"{100 * row['benign'][c]:.1f}" for c in BENIGN]
        terms = [f"{row['terms'][t]:.3f}" if t in ("TMA", "ES:D") else f"{row['terms'][t]:.1f}"
                 for t in ERS_TERMS]  # fmt: skip
        cells = [row["loss"], row["defense"], *benign, *terms, f"{row['ers']:.1f}",
                 f"{row['seconds_per_epoch']:.1f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_lines(rows: list[dict]) -> list[str]:
    """ACT and HM&ICS: at least 4× the ERS of no defense, R@1 at most 5 points lower."""
    lines = []
    for loss in dict.fromkeys(r["loss"] for r in rows):
        by_defense = {r["defense"]: r for r in rows if r["loss"] == loss}
        base = by_defense.get("none")
        for name in TARGET_ROWS:
            row = by_defense.get(name)
            if base is None or row is None:
                continue
            factor = row["ers"] / base["ers"]
            drop = 100 * (base["benign"]["R@1"] - row["benign"]["R@1"])
            met = factor >= 4 and drop <= 5
            side = "below" if drop > 0 else "above"
            change = f"{abs(drop):.1f} points {side}" if drop else "equal"
            verdict = "met" if met else "NOT met"
            lines.append(f"{loss} {name}: ERS {factor:.1f}× no defense's, R@1 {change} -> "
                         f"target (≥ 4×, ≤ 5 points below) {verdict}")  # fmt: skip
    return lines


def cpu_seconds(function) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.process_time() - cpu, time.perf_counter() - wall


def time_step(defense: str, args: argparse.Namespace) -> dict:
    """One defended step against η+1 standard steps on the same batches (triplet loss)."""
    flags = [*row_flags(defense, "triplet", args), "--defense_hm_early_stop", "0"]
    opt, _ = parameters.parse_args(flags)
    data = datasets.build(opt, architectures.input_spec(opt.arch))
    opt.n_classes = len(set(data.train.labels.tolist()))
    sampler = datasampler.build(opt, data.train.labels)
    batches = []
    for indices in list(sampler)[: args.timing_batches]:
        items = [data.train[i] for i in indices]
        images = torch.stack([image for image, _, _ in items])
        batches.append((images, torch.tensor([label for _, label, _ in items])))
    precision = Precision(False, torch.device("cpu"))

    def fresh(step_opt: argparse.Namespace) -> defenses.TrainingStep:
        torch.manual_seed(args.seed)
        model = architectures.build(step_opt)
        criterion = criteria.build(step_opt)
        return defenses.build(step_opt, model, criterion,
                              build_optimizer(step_opt, model, criterion), precision)  # fmt: skip

    defended = fresh(opt)
    plain_opt = copy.copy(opt)
    plain_opt.defense = "none"
    standard = fresh(plain_opt)
    passes = []
    defended_cpu, standard_cpu, defended_wall, standard_wall = [], [], [], []
    for _ in range(args.timing_rounds):
        for images, labels in batches:
            cpu, wall = cpu_seconds(lambda: defended(images, labels))  # noqa: B023
            defended_cpu.append(cpu)
            defended_wall.append(wall)
            passes.append(defended.passes)
            cpu, wall = cpu_seconds(lambda: [standard(images, labels)  # noqa: B023
                                             for _ in range(args.pgditer + 1)])  # fmt: skip
            standard_cpu.append(cpu)
            standard_wall.append(wall)
    return {
        "defense": defense,
        "passes": statistics.mean(passes),
        "defended_cpu_s": statistics.median(defended_cpu),
        "standard_cpu_s": statistics.median(standard_cpu),
        "ratio_cpu": sum(defended_cpu) / sum(standard_cpu),
        "ratio_wall": sum(defended_wall) / sum(standard_wall),
    }


def main_(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    result: dict = {"settings": vars(args), "torch": torch.__version__,
                    "machine": platform.processor() or platform.machine()}  # fmt: skip
    if not args.skip_training:
        rows = []
        with tempfile.TemporaryDirectory() as scratch:
            root = pathlib.Path(args.save_path or scratch)
            for loss in args.losses:
                for defense in args.defenses:
                    rows.append(train_and_swipe(defense, loss, args, root))
                    print(f"{loss} {defense}: ERS {rows[-1]['ers']:.1f}", flush=True)
        result["rows"] = rows
        print(format_table(rows))
        for line in target_lines(rows):
            print(line)
    if not args.skip_timing:
        torch.set_num_threads(args.threads)
        timing = [time_step(d, args) for d in args.defenses if d != "none"]
        result["timing"] = timing
        print(f"\nOne defended step / {args.pgditer + 1} standard steps (η = {args.pgditer}, "
              f"triplet, batch {args.bs}, {args.timing_batches} batches × "
              f"{args.timing_rounds} rounds, {torch.get_num_threads()} thread(s)):")  # fmt: skip
        for t in timing:
            print(f"  {t['defense']:<17} passes {t['passes']:5.1f}  defended "
                  f"{t['defended_cpu_s']:.3f} s  standard×{args.pgditer + 1} "
                  f"{t['standard_cpu_s']:.3f} s  ratio CPU {t['ratio_cpu']:.3f}  "
                  f"wall {t['ratio_wall']:.3f}")  # fmt: skip
    if args.output:
        atomic_write_text(args.output, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main_()
