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
    RESUME_KEYS,
    ResumePoint,
    capture_checkpoint,
    choose_resume_source,
    describe_checkpoint,
    find_resume_checkpoint,
    load_checkpoint,
    restore_checkpoint,
    resume_position,
    resume_problem,
    save_checkpoint,
    where,
)
from .config import ConfigError, TrainConfig, parse_config
from .data import ShardSampler, load_data
from .distributed import DistContext
from .keep import KeptWeights
from .loop import (
    Preempted,
    Preemption,
    TrainState,
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
    # Saved with every checkpoint and kept across resumes: which run a checkpoint on some host belongs
    # to, so that a run started over (--resume never) outranks an older run's files (choose_resume_source).
    run_started = time.time()
    saved = load_resume_state(cfg, ctx)
    torch.manual_seed(cfg.seed + ctx.rank)
    if saved is None:
        start = ResumePoint(run_started=run_started)
    else:
        start = restore_checkpoint(saved, model, optimizer, scaler, ctx)
        log.info("resumed at epoch %d step %d of %d", start.epoch + 1, start.step, steps_per_epoch)
        saved = None
    history, partial = start.history, start.partial_train
    # From the position in this run's steps, not a saved step count: an epoch-boundary checkpoint may
    # come from a run with another number of processes, i.e. another number of steps per epoch.
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch, start.epoch * steps_per_epoch + start.step)
    # After the model's resumed weights are in: the moving average starts as their copy.
    kept = KeptWeights(cfg, model, ctx, steps_per_epoch)
    kept.load_state_dict(start.kept)
    start.kept = None  # the checkpoint's copy of --keep best/ema's weights, no longer needed
    state = TrainState(
        model=model,
        wrapped=model,  # replaced by wrap() when the first epoch sets the frozen set
        criterion=criterion,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        amp_dtype=amp_dtype,
        on_step=kept.on_step,
    )

    def checkpoint(epoch: int, step: int, meter: Accumulator | None) -> None:
        if cfg.checkpoint_dir is None:
            return
        captured = capture_checkpoint(
            state,
            kept,
            ctx,
            cfg,
            epoch=epoch,
            step=step,
            meter=meter,
            history=history,
            run_started=start.run_started,
        )
        if captured is not None:  # rank 0
            path = save_checkpoint(captured, cfg.checkpoint_dir)
            log.info("checkpoint (%d epochs + %d steps done) -> %s", epoch, step, path)
        distributed.barrier(ctx)

    show_progress = ctx.is_main and (cfg.progress if cfg.progress is not None else sys.stderr.isatty())
    frozen = None
    for epoch in range(start.epoch, cfg.epochs):
        if frozen != (epoch < cfg.freeze_epochs):
            frozen = epoch < cfg.freeze_epochs
            set_backbone_frozen(model, cfg.arch, frozen)
            state.wrapped = wrap(model, cfg, ctx)
            log.info("backbone %s", "frozen (training the head only)" if frozen else "trainable")
        skip_steps = start.step if epoch == start.epoch else 0
        data.train.set_epoch(epoch)
        data.train_sampler.set_epoch(epoch, skip_samples=skip_steps * cfg.batch_size)
        meter = Accumulator()
        if partial is not None:
            meter.sums = partial.to(ctx.device)
            partial = None

        state.wrapped.train()
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
        steps, images_done = train_one_epoch(state, train_loader, meter, ctx, cfg, preemption, progress)
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
