"""Fine-tune a torchvision classifier on an ImageFolder dataset: one process, torchrun, or SageMaker.

    python -m training.train --data-dir DIR --model-dir OUT [options]
    torchrun --nproc-per-node N -m training.train --data-dir DIR --model-dir OUT [options]

``main`` reads top to bottom like torchvision's ``references/classification/train.py``: data, model,
optimizer and schedule, resume, the epoch loop (train, evaluate, checkpoint), test, artifact.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from inference.model_config import ModelConfig
from inference.preprocessing import IMAGENET_MEAN, IMAGENET_STD, resize_size_for

from . import distributed, provenance
from .artifact import export_state_dict, write_artifact
from .checkpoint import (
    choose_resume_source,
    describe_checkpoint,
    find_resume_checkpoint,
    load_checkpoint,
    resume_position,
    rng_state,
    save_checkpoint,
    set_rng_state,
    where,
)
from .config import ConfigError, TrainConfig, parse_config
from .data import ShardSampler, load_data
from .distributed import DistContext
from .keep import KeptWeights
from .loop import (
    Preempted,
    Preemption,
    amp_dtype_for,
    build_optimizer,
    build_scheduler,
    evaluate,
    grad_scaler_for,
    train_one_epoch,
    wrap,
)
from .metrics import Accumulator, epoch_line, plot_curves, test_line, write_metrics
from .model import create_model, set_backbone_frozen, set_frozen_norm_eval

log = logging.getLogger("training")

# Exit status after a SIGTERM checkpoint: 128 + SIGTERM, what a shell reports for a process it killed.
EXIT_PREEMPTED = 128 + signal.SIGTERM


def setup_logging(ctx: DistContext) -> None:
    # Rank 0 logs progress; the other ranks only warnings, so N processes do not print N copies.
    logging.basicConfig(
        level=logging.INFO if ctx.is_main else logging.WARNING,
        format=f"%(asctime)s [rank {ctx.rank}] %(message)s",
        stream=sys.stdout,
        force=True,
    )


def load_resume_state(cfg: TrainConfig, ctx: DistContext) -> dict[str, Any] | None:
    """The checkpoint to continue from, on every rank, or None to start from scratch.

    Every rank looks on its own disk (multi-host torchrun has no shared file system, and which host is
    rank 0 changes when a host is replaced) and reports what it has; the newest checkpoint any rank has
    wins (``checkpoint.choose_resume_source``), and that rank reads it and broadcasts it. Its settings
    are checked against this run's before the broadcast, and every decision is taken from the gathered
    reports, so all ranks go on or all stop with the same error instead of some waiting forever.
    """
    if cfg.resume == "never":
        return None
    path = find_resume_checkpoint(cfg.resume, cfg.checkpoint_dir)
    reports = distributed.gather_objects(ctx, describe_checkpoint(path, socket.gethostname()))
    src = choose_resume_source(reports, cfg.resume, RESUME_KEYS)
    if src is None:
        return None
    chosen = reports[src]
    location = where(chosen)
    problems = distributed.gather_objects(ctx, resume_problem(chosen["args"], cfg, location))
    problem = next((p for p in problems if p is not None), None)
    if problem is not None:
        raise ConfigError(problem)
    log.info(
        "resuming from %s (rank %d): %d epochs + %d steps done",
        location,
        src,
        chosen["epoch"],
        chosen["step"],
    )
    others = {
        f"{where(r)} ({r['epoch']} epochs + {r['step']} steps)"
        for r in reports
        if "epoch" in r and resume_position(r) != resume_position(chosen)
    }
    if others:
        log.warning("not resuming from the older checkpoints %s", "; ".join(sorted(others)))
    state, error = None, None
    if ctx.rank == src:
        try:
            state = load_checkpoint(Path(chosen["path"]))
        except Exception as exc:  # the others wait in the broadcast: tell them instead of leaving them there
            error = f"cannot read {location}: {type(exc).__name__}: {exc}"
    if ctx.distributed:
        box = [state if error is None else {"load_error": error}]
        dist.broadcast_object_list(box, src=src)
        state = box[0]
        error = state.get("load_error")
    if error is not None:
        raise ConfigError(error)
    return state


# What must match between a checkpoint and the run resuming it for the result to be the same run's.
# --weights is here not for its effect (the checkpoint replaces every weight) but because the artifact's
# metadata names it as what the model was trained from; AMP changes the arithmetic of every step left.
RESUME_KEYS = (
    "arch",
    "weights",
    "epochs",
    "batch_size",
    "lr",
    "opt",
    "momentum",
    "weight_decay",
    "label_smoothing",
    "image_size",
    "min_crop_scale",
    "seed",
    "freeze_epochs",
    "lr_warmup_epochs",
    "amp",
    "amp_dtype",
    "keep",
)


def resume_problem(saved: dict[str, Any], cfg: TrainConfig, source: str) -> str | None:
    """Why the run that saved ``saved`` (its ``args``) is not the run ``cfg`` describes, or None."""
    current = cfg.to_dict()
    changed = [f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in RESUME_KEYS if saved.get(k) != current[k]]
    if not changed:
        return None
    return (
        f"{source} is from a run with other settings ({'; '.join(changed)}); "
        "pass --resume never to start over, or another --checkpoint-dir"
    )


def check_resumable(saved: dict[str, Any], cfg: TrainConfig, source: str) -> None:
    problem = resume_problem(saved, cfg, source)
    if problem is not None:
        raise ConfigError(problem)


def main(cfg: TrainConfig) -> dict[str, Any]:
    ctx = distributed.setup(cfg.dist, cfg.threads)
    setup_logging(ctx)
    preemption = Preemption()
    try:
        return run(cfg, ctx, preemption)
    finally:
        preemption.restore()
        distributed.cleanup()


def run(cfg: TrainConfig, ctx: DistContext, preemption: Preemption) -> dict[str, Any]:
    log.info(
        "%d process(es) on %s, %d CPU threads each; config: %s",
        ctx.world_size,
        ctx.device,
        torch.get_num_threads(),
        cfg.to_dict(),
    )
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # Same seed on every rank for the initial weights (DDP also broadcasts rank 0's); rank-specific after.
    torch.manual_seed(cfg.seed)

    # Data
    data = load_data(cfg, ctx)
    train_loader = data.train_loader(cfg)
    valid_loader = data.loader(data.valid, ShardSampler(len(data.valid), ctx.rank, ctx.world_size), cfg)
    log.info(
        "%d classes; %d train, %d valid, %s test images",
        len(data.class_names),
        len(data.train),
        len(data.valid),
        len(data.test) if data.test is not None else "no",
    )

    # Model
    # With --weights imagenet, one process per host downloads into the torch hub cache while the others
    # wait, then they read the cached file instead of racing to download it.
    first_on_host = ctx.local_rank == 0 or cfg.weights != "imagenet"
    if not first_on_host:
        distributed.barrier(ctx)
    model = create_model(cfg.arch, len(data.class_names), cfg.weights)
    if cfg.weights == "imagenet" and ctx.local_rank == 0:
        distributed.barrier(ctx)
    model.to(ctx.device, memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    # Optimizer, mixed precision (the schedule comes after resuming: it starts where the run stands)
    steps_per_epoch = len(train_loader)
    optimizer = build_optimizer(model, cfg)
    amp_dtype = amp_dtype_for(cfg, ctx.device)
    scaler = grad_scaler_for(amp_dtype, ctx.device)
    log.info("mixed precision: %s%s", amp_dtype or "off (fp32)", " with GradScaler" if scaler else "")

    # Resume
    start_epoch, start_step, history, partial = 0, 0, [], None
    # Saved with every checkpoint and kept across resumes: which run a checkpoint on some host belongs
    # to, so that a run started over (--resume never) outranks an older run's files (choose_resume_source).
    run_started = time.time()
    state = load_resume_state(cfg, ctx)
    saved_kept = state.get("kept") if state is not None else None  # --keep best/ema's state, see below
    torch.manual_seed(cfg.seed + ctx.rank)
    if state is not None:
        run_started = float(state.get("run_started", 0.0))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, start_step, history = state["epoch"], state["step"], list(state["history"])
        if len(state["rng"]) == ctx.world_size:
            set_rng_state(state["rng"][ctx.rank])
            partial = state["partial_train"][ctx.rank] if start_step else None
        elif start_step:
            raise ConfigError("a mid-epoch checkpoint resumes only with the same number of processes")
        log.info("resumed at epoch %d step %d of %d", start_epoch + 1, start_step, steps_per_epoch)
        state = None
    # From the position in this run's steps, not a saved step count: an epoch-boundary checkpoint may
    # come from a run with another number of processes, i.e. another number of steps per epoch.
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch, start_epoch * steps_per_epoch + start_step)
    # After the model's resumed weights are in: the moving average starts as their copy.
    kept = KeptWeights(cfg, model, ctx, steps_per_epoch)
    kept.load_state_dict(saved_kept)
    saved_kept = None

    def checkpoint(epoch: int, step: int, meter: Accumulator | None) -> None:
        if cfg.checkpoint_dir is None:
            return
        rngs = distributed.gather_objects(ctx, rng_state())
        sums = meter.sums.cpu() if meter is not None and meter.sums is not None else None
        partials = distributed.gather_objects(ctx, sums)
        if ctx.is_main:
            path = save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else {},
                    "epoch": epoch,
                    "step": step,
                    "history": history,
                    "rng": rngs,
                    "partial_train": partials,
                    "args": cfg.to_dict(),
                    "run_started": run_started,
                    "kept": kept.state_dict(),
                },
                cfg.checkpoint_dir,
            )
            log.info("checkpoint (%d epochs + %d steps done) -> %s", epoch, step, path)
        distributed.barrier(ctx)

    show_progress = ctx.is_main and (cfg.progress if cfg.progress is not None else sys.stderr.isatty())
    frozen = None
    wrapped = model
    for epoch in range(start_epoch, cfg.epochs):
        if frozen != (epoch < cfg.freeze_epochs):
            frozen = epoch < cfg.freeze_epochs
            set_backbone_frozen(model, cfg.arch, frozen)
            wrapped = wrap(model, cfg, ctx)
            log.info("backbone %s", "frozen (training the head only)" if frozen else "trainable")
        skip_steps = start_step if epoch == start_epoch else 0
        data.train.set_epoch(epoch)
        data.train_sampler.set_epoch(epoch, skip_samples=skip_steps * cfg.batch_size)
        meter = Accumulator()
        if partial is not None:
            meter.sums = partial.to(ctx.device)
            partial = None

        wrapped.train()
        set_frozen_norm_eval(model, cfg.arch, frozen)
        progress = None
        if show_progress:
            from tqdm import tqdm

            progress = tqdm(
                total=steps_per_epoch,
                initial=skip_steps,
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
                leave=False,
                dynamic_ncols=True,
            )
        started = time.perf_counter()
        steps, images_done = train_one_epoch(
            wrapped,
            criterion,
            optimizer,
            scheduler,
            scaler,
            train_loader,
            meter,
            ctx,
            cfg,
            amp_dtype,
            preemption,
            progress,
            on_step=kept.on_step,
        )
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        if progress is not None:
            progress.close()
        if skip_steps + steps < steps_per_epoch:
            log.warning("SIGTERM: stopping at epoch %d step %d", epoch + 1, skip_steps + steps)
            checkpoint(epoch, skip_steps + steps, meter)
            raise Preempted

        distributed.broadcast_buffers(ctx, model)
        train = meter.reduce(ctx)
        images_done = distributed.all_reduce_sum(ctx, torch.tensor([float(images_done)])).item()
        val = evaluate(model, valid_loader, ctx, cfg.channels_last)
        record = {
            "epoch": epoch + 1,
            "train_loss": train["loss"],
            "train_acc1": train["acc1"],
            "val_loss": val["loss"],
            "val_acc1": val["acc1"],
            "val_acc5": val["acc5"],
            "val_samples": val["samples"],
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_sec": images_done / max(seconds, 1e-9),
            "epoch_seconds": seconds,
        }
        history.append(record)
        log.info(epoch_line(record, cfg.epochs))
        kept.end_epoch(record)
        checkpoint(epoch + 1, 0, None)
        if ctx.is_main:
            write_metrics(cfg.output_dir, history, {"complete": False})
            plot_curves(cfg.output_dir, history)
        if distributed.any_rank(ctx, preemption.requested):
            log.warning("SIGTERM after epoch %d: checkpoint saved, exiting", epoch + 1)
            raise Preempted

    # Test set, final metrics, artifact: all of the weights --keep chose
    summary: dict[str, Any] = {"complete": True, "world_size": ctx.world_size, "config": cfg.to_dict()}
    # What training.register puts into the model package's metadata; the commit only where it is known.
    summary["num_classes"] = len(data.class_names)
    if commit := provenance.git_commit():
        summary["git_commit"] = commit
    summary["kept"] = kept.apply(history, valid_loader, cfg.channels_last)
    summary["mixed_precision"] = str(amp_dtype).removeprefix("torch.") if amp_dtype else "off"
    log.info("artifact weights: %s", summary["kept"])
    if data.test is not None:
        test_loader = data.loader(data.test, ShardSampler(len(data.test), ctx.rank, ctx.world_size), cfg)
        test = evaluate(model, test_loader, ctx, cfg.channels_last)
        summary.update(
            test_loss=test["loss"],
            test_acc1=test["acc1"],
            test_acc5=test["acc5"],
            test_samples=test["samples"],
        )
        log.info(test_line(summary))
    if ctx.is_main:
        final = summary["kept"]
        model_config = ModelConfig(
            arch=cfg.arch,
            class_names=data.class_names,
            image_size=cfg.image_size,
            resize_size=resize_size_for(cfg.image_size),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            metadata={
                "torch": torch.__version__,
                "epochs": cfg.epochs,
                "keep": cfg.keep,
                "kept_epoch": final["epoch"],
                **{k: final[k] for k in ("ema_update_decay", "ema_steps") if k in final},
                "val_acc1": final["val_acc1"],
                "val_acc5": final["val_acc5"],
                **{k: summary[k] for k in ("test_acc1", "test_acc5") if k in summary},
                "weights": cfg.weights,
                "world_size": ctx.world_size,
                "seed": cfg.seed,
            },
        )
        write_artifact(cfg.model_dir, export_state_dict(model), model_config)
        write_metrics(cfg.output_dir, history, summary)
        plot_curves(cfg.output_dir, history)
        log.info("artifact written to %s; metrics in %s", cfg.model_dir, cfg.output_dir)
    distributed.barrier(ctx)
    return {"epochs": history, **summary}


def cli(argv: list[str] | None = None) -> None:
    try:
        cfg = parse_config(argv)
    except ConfigError as exc:
        raise SystemExit(f"training.train: {exc}") from None
    try:
        main(cfg)
    except Preempted:
        sys.exit(EXIT_PREEMPTED)
    except ConfigError as exc:  # found after start-up, e.g. a checkpoint that does not fit
        raise SystemExit(f"training.train: {exc}") from None


if __name__ == "__main__":
    cli()
