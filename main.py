"""Train a deep metric learning model: the recipe, top to bottom.

    python main.py                                   # digits + c2f2, a few minutes on a CPU
    python main.py --dataset cub200 --loss margin --batch_mining distance --source_path DATA
    python main.py --resume Training_Results/digits/<run>/checkpoint_last.pth

Every epoch: train, evaluate each split (Test, Val with --use_tv_split, Train unless
--no_train_metrics), write a per-split checkpoint when a --storage_metrics value improves, write
checkpoint_last.pth (everything needed to resume), CSV logs and PNG curves.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

import architectures
import criteria
import datasampler
import datasets
import defenses
import metrics
import parameters
from defenses.base import NonFiniteLossError, TrainingStep
from utilities import selection
from utilities.checkpoint import (
    load_checkpoint,
    plain_options,
    restore,
    save_checkpoint,
    split_size,
)
from utilities.device import select_device
from utilities.embedding import embed_dataset, evaluate_dataset
from utilities.errors import ConfigError, TrainingError, one_line
from utilities.logger import RunLog, summary
from utilities.online_logging import OnlineLogger
from utilities.optimization import Schedules, build_optimizer
from utilities.precision import Precision
from utilities.run_setup import (
    check_run_dir_possible,
    make_run_dir,
    prepare_resumed_run_dir,
    resumed_options,
    write_json,
)
from utilities.seeding import rng_state, seed_everything, set_rng_state


def train(argv: Sequence[str] | None = None) -> dict[str, float]:
    opt, explicit = parameters.parse_args(argv)
    resume = None
    if opt.resume:
        resume = load_checkpoint(opt.resume, "--resume")
        if resume["kind"] != "last":
            raise ConfigError(
                f"--resume: {opt.resume} is a best-model checkpoint without optimizer state; "
                "resume from checkpoint_last.pth"
            )
        opt = resumed_options(resume["options"], opt, explicit)
        run_dir = prepare_resumed_run_dir(opt.resume)
    else:
        check_run_dir_possible(opt)

    device = select_device(opt)
    seed_everything(opt.seed)

    # Data: transforms follow the architecture's input size, channels and normalisation.
    data = datasets.build(opt, architectures.input_spec(opt.arch))
    opt.n_classes = len(set(data.train.labels.tolist()))
    if resume is not None and resume["options"].get("n_classes", opt.n_classes) != opt.n_classes:
        raise ConfigError(
            f"--resume: the training split at --source_path {opt.source_path} has "
            f"{opt.n_classes} classes, the checkpoint {opt.resume} was trained on "
            f"{resume['options']['n_classes']}; expected the same data"
        )
    sampler = datasampler.build(opt, data.train.labels)
    train_loader = DataLoader(
        data.train,
        batch_sampler=sampler,
        num_workers=opt.num_workers,
        pin_memory=device.type == "cuda",
    )
    eval_splits = {"Test": data.test}
    if data.val is not None:
        eval_splits["Val"] = data.val
    if not opt.no_train_metrics:
        eval_splits["Train"] = data.evaluation
    for name in ("Test", "Val"):  # first read after an epoch; a bad file must stop us now
        if name in eval_splits:
            eval_splits[name].check_files(name, opt.num_workers)

    # Model, loss (with its miner), optimizer over both, the training step (which may hold
    # more optimizers), one schedule per optimizer.
    model = architectures.build(opt).to(device)
    criterion = criteria.build(opt).to(device)
    optimizer = build_optimizer(opt, model, criterion)
    precision = Precision(opt.amp, device)
    step = defenses.build(opt, model, criterion, optimizer, precision)
    warmup_epochs = max(opt.warmup_epochs, criterion.generator_warmup_epochs)
    scheduler = Schedules(opt, step.optimizers, warmup_epochs)
    evaluator = metrics.Evaluator(opt.evaluation_metrics, kmeans_seed=opt.seed)
    directions = {m.key: m.higher_is_better for m in metrics.build_metrics(opt.evaluation_metrics)}

    start_epoch, history = 0, None
    if resume is not None:
        parts = {"model": model, "criterion": criterion, "optimizer": optimizer,
                 "scheduler": scheduler, "scaler": precision, "sampler": sampler,
                 "training_step": step}  # fmt: skip
        for key, part in parts.items():
            restore(part, resume[key], key, opt.resume, "--resume")
        history, start_epoch = resume["history"], resume["epoch"]
        set_rng_state(resume["rng"])
    else:
        run_dir = make_run_dir(opt)  # only now: a failed start leaves no empty folder
    log = RunLog(run_dir, history)
    write_json(run_dir / "options.json", plain_options(opt))
    online = OnlineLogger(opt, run_dir, resume.get("wandb_id") if resume else None)
    print(
        f"{opt.dataset}: {len(data.train)} train / {len(data.test)} test images, "
        f"{opt.n_classes} train classes | loss {opt.loss}"
        f"{' + ' + opt.batch_mining if criterion.requires_batchminer else ''} | "
        f"defense {opt.defense} | {opt.arch} "
        f"({sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable) | "
        f"device {device} | run folder {run_dir}"
    )

    sizes = {name: split_size(split) for name, split in eval_splits.items()}  # for eval.py
    last_results: dict[str, dict[str, float]] = {}
    try:
        for epoch in range(start_epoch + 1, opt.n_epochs + 1):
            started = time.time()
            refresh_sampler_embeddings(sampler, model, data.evaluation, device, precision, opt)
            step.begin_epoch(epoch)
            terms = train_one_epoch(step, train_loader, device, epoch, opt)
            train_time = time.time() - started
            last_results = {
                split: evaluate_dataset(
                    evaluator,
                    model,
                    dataset,
                    batch_size=opt.bs,
                    num_workers=opt.num_workers,
                    device=device,
                    precision=precision,
                    name=split,
                    metric_device=device if opt.evaluate_on_gpu else torch.device("cpu"),
                )
                for split, dataset in eval_splits.items()
            }
            scheduler.step(epoch)

            improved = [
                (split, name)
                for split, values in last_results.items()
                for name in opt.storage_metrics
                if log.improves(split, name, values[name], directions[name])
            ]
            log.log("Train", epoch, {**terms, "time": train_time, **last_results.get("Train", {})})
            for split, values in last_results.items():
                if split != "Train":
                    log.log(split, epoch, values)
            state = {
                "data": sizes,
                "model": model.state_dict(),
                "criterion": criterion.state_dict(),
                "options": plain_options(opt),
                "epoch": epoch,
                "history": log.history,
            }
            for split, name in improved:
                save_checkpoint(run_dir / f"checkpoint_{split}_{name}.pth", "best", **state)
            save_checkpoint(
                run_dir / "checkpoint_last.pth",
                "last",
                **state,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=precision.state_dict(),
                sampler=sampler.state_dict(),
                training_step=step.state_dict(),
                rng=rng_state(),
                wandb_id=online.run_id,
            )
            log.write()
            online.log(flat_metrics(terms, last_results), epoch)
            print(
                f"epoch {epoch}/{opt.n_epochs}: loss {terms['loss']:.4f} ({train_time:.1f}s) | "
                + " | ".join(f"{s} {format_metrics(v)}" for s, v in last_results.items())
            )

    except KeyboardInterrupt:
        raise KeyboardInterrupt(interrupted_message(run_dir)) from None

    splits = summary(log.history, list(eval_splits), opt.storage_metrics, directions)
    rule, key = selection.rule(opt), opt.storage_metrics[0]
    chosen = selection.selected(log.history, rule, key, directions[key])
    write_json(
        run_dir / "training_summary.json",
        {
            "epochs": opt.n_epochs,
            "seed": opt.seed,
            "group": opt.group,
            "selection": chosen,
            "splits": splits,
            "options": plain_options(opt),
        },
    )
    online.finish()
    final = last_results.get("Test") or {
        name: values[-1] for name, values in log.history.get("Test", {}).items() if name != "epoch"
    }
    print(f"Final test metrics (the last epoch, {opt.n_epochs}): {format_metrics(final)}")
    for name, best in splits.get("Test", {}).get("best", {}).items():
        print(f"Best test {name}: {best['value']:.4f} at epoch {best['epoch']} "
              f"({run_dir / f'checkpoint_Test_{name}.pth'})")  # fmt: skip
    if chosen is not None and rule != "last":
        split = "validation" if rule == "val" else "test"
        print(f"Selected epoch ({rule}: best {key} on the {split} split): {chosen['epoch']}, "
              f"test {format_metrics(chosen['test'])}"
              + (f" [{chosen['note']}]" if "note" in chosen else ""))  # fmt: skip
    print(f"Run folder: {run_dir}")
    print(f"Last checkpoint: {run_dir / 'checkpoint_last.pth'}")
    return final


def train_one_epoch(
    step: TrainingStep,
    loader: DataLoader,
    device: torch.device,
    epoch: int,
    opt: argparse.Namespace,
) -> dict[str, float]:
    """One pass of ``len(loader)`` batches, one ``step`` call each; returns the mean of every
    term the step reports (``loss`` first) over the batches that reported it. A non-finite
    loss stops."""
    step.model.train()
    totals: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    progress = tqdm(loader, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True, disable=None)
    for index, (images, labels, _) in enumerate(progress, start=1):
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        try:
            terms = step(images, labels)
        except NonFiniteLossError as error:
            raise TrainingError(
                f"non-finite loss ({error.value}) at epoch {epoch}, step {index} with --loss "
                f"{opt.loss} and --defense {opt.defense}; training stopped, the last good "
                "checkpoint is left intact"
            ) from None
        for name, value in terms.items():
            totals[name] = totals.get(name, 0) + value.detach()
            counts[name] = counts.get(name, 0) + 1
        progress.set_postfix(passes=step.passes, refresh=False)
    means = {name: float(total) / counts[name] for name, total in totals.items()}
    return {"loss": means.pop("loss", math.nan), **means}


def refresh_sampler_embeddings(
    sampler: datasampler.BatchSampler,
    model: torch.nn.Module,
    train_images: torch.utils.data.Dataset,
    device: torch.device,
    precision: Precision,
    opt: argparse.Namespace,
) -> None:
    """Samplers that select batches from embeddings (coreset, batch-match) get the current
    model's embeddings of the training set (evaluation transforms) at the start of each epoch."""
    if sampler.needs_embeddings:
        embeds = embed_dataset(
            model,
            train_images,
            batch_size=opt.bs,
            num_workers=opt.num_workers,
            device=device,
            precision=precision,
            description="embedding the training set for the sampler",
        )
        sampler.set_embeddings(embeds)


def interrupted_message(run_dir: pathlib.Path) -> str:
    """Where a run stopped by Ctrl-C can be resumed from."""
    last = run_dir / "checkpoint_last.pth"
    if not last.is_file():
        return f"no epoch finished, no checkpoint was written (run folder {run_dir})"
    epoch = load_checkpoint(last, "--resume")["epoch"]
    return f"the last checkpoint is {last} (epoch {epoch}); continue with: --resume {last}"


def format_metrics(values: dict[str, float]) -> str:
    return " ".join(f"{name}={value:.4f}" for name, value in values.items())


def flat_metrics(terms: dict[str, float], results: dict[str, dict[str, float]]) -> dict[str, Any]:
    flat: dict[str, Any] = {f"Train: {name}": value for name, value in terms.items()}
    for split, values in results.items():
        flat.update({f"{split}: {name}": value for name, value in values.items()})
    return {k: v for k, v in flat.items() if not (isinstance(v, float) and math.isnan(v))}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        train(argv)
    except (ConfigError, TrainingError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(f"interrupted: {interrupt.args[0] if interrupt.args else 'nothing was written'}",
              file=sys.stderr)  # fmt: skip
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
