"""The training loop's parts: optimizer and schedule, mixed precision, DDP wrapping, one epoch of
training, evaluation, and turning SIGTERM into a checkpoint-and-stop (torchvision's ``train_one_epoch``
and ``evaluate``)."""

from __future__ import annotations

import math
import signal
from typing import Any

import torch
from torch import nn

from . import distributed
from .config import TrainConfig
from .distributed import DistContext
from .metrics import Accumulator


class Preemption:
    """Turns SIGTERM (spot interruption, StopTrainingJob, torchrun shutting down) into a flag.

    The loop polls it between steps; all ranks agree through one all-reduce, save a checkpoint at the
    same step and exit. SageMaker gives 120 s after SIGTERM for spot (torchrun's agent 30 s before it
    sends SIGKILL), far more than one step plus a checkpoint.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)


class Preempted(Exception):
    """Raised after the SIGTERM checkpoint is written."""


def amp_dtype_for(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 where the hardware has it (every CPU autocast, Ampere+ GPUs), else fp16 (T4, V100)."""
    if not cfg.amp:
        return None
    if cfg.amp_dtype == "bf16":
        return torch.bfloat16
    if cfg.amp_dtype == "fp16":
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """No weight decay on biases and normalisation weights (1-d tensors), as in torchvision's recipes."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.opt == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Per-step linear warm-up, then cosine decay to zero: a pure function of the step, so it resumes."""
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.lr_warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def wrap(model: nn.Module, cfg: TrainConfig, ctx: DistContext) -> nn.Module:
    """DDP (when distributed) and torch.compile around the plain model; redone when the frozen set changes."""
    wrapped = model
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if cfg.compile:
        wrapped = torch.compile(wrapped)
    return wrapped


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    loader: torch.utils.data.DataLoader,
    meter: Accumulator,
    ctx: DistContext,
    cfg: TrainConfig,
    amp_dtype: torch.dtype | None,
    preemption: Preemption,
    progress: Any,
) -> tuple[int, int]:
    """Train over ``loader``; returns (steps, images) done, fewer steps than its length if preempted."""
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    steps = images_done = 0
    for images, targets in loader:
        if distributed.any_rank(ctx, preemption.requested):
            return steps, images_done
        images = images.to(ctx.device, non_blocking=True, memory_format=memory_format)
        targets = targets.to(ctx.device, non_blocking=True)
        with torch.autocast(ctx.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(images)
            if isinstance(logits, tuple):  # Inception/GoogLeNet return (logits, aux logits) in training
                logits = logits[0]
            loss = criterion(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        meter.update(logits.float(), targets, loss.float())
        steps += 1
        images_done += targets.numel()
        if progress is not None:
            progress.update(1)
    return steps, images_done


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader: torch.utils.data.DataLoader, ctx: DistContext, channels_last: bool = False
) -> dict[str, float]:
    """Loss, top-1 and top-5 over every sample of every rank's shard, in fp32 as the endpoint runs."""
    model.eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    criterion = nn.CrossEntropyLoss()
    meter = Accumulator()
    for images, targets in loader:
        images = images.to(ctx.device, non_blocking=True, memory_format=memory_format)
        targets = targets.to(ctx.device, non_blocking=True)
        logits = model(images)
        meter.update(logits, targets, criterion(logits, targets))
    return meter.reduce(ctx)
