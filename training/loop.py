"""The training loop's parts: optimizer and schedule, mixed precision, DDP wrapping, the state a step
uses (:class:`TrainState`), one epoch of training, evaluation, and turning SIGTERM into a
checkpoint-and-stop (torchvision's ``train_one_epoch`` and ``evaluate``)."""

from __future__ import annotations

import math
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import distributed
from .config import TrainConfig
from .data import to_model_input
from .distributed import DistContext
from .metrics import Accumulator

# Steps between two polls of the SIGTERM flag. Agreeing on it is an all-reduce whose result the host
# reads, which waits for the GPU to finish the step and leaves it idle while Python queues the next
# one. Every 8th step makes that cost an eighth; 8 steps plus a checkpoint still fit the grace period
# after SIGTERM (see Preemption).
STOP_POLL_STEPS = 8


class Preemption:
    """Turns SIGTERM (spot interruption, StopTrainingJob, torchrun shutting down) into a flag.

    The loop polls it every :data:`STOP_POLL_STEPS` steps; all ranks agree through one all-reduce,
    save a checkpoint at the same step and exit. torchrun's agent allows 30 s after SIGTERM before it
    sends SIGKILL, more than a few steps plus a checkpoint. In SageMaker's training containers the
    signal does not get this far (PID 1 is a shell that does not pass it on): there the per-epoch
    checkpoint is the bound on lost work.
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
    """bf16 where the hardware has it (every CPU autocast, Ampere+ GPUs), else fp16 (T4, V100).

    ``--amp auto`` (the default) is on for a GPU only: there it is the tensor cores' speed-up (evaluation
    stays fp32 either way). What bf16 autocast does on a CPU depends on its bf16 instructions (AVX-512
    BF16, AMX) and can be a slow-down, so there it has to be asked for.
    """
    enabled = cfg.amp if cfg.amp is not None else device.type == "cuda"
    if not enabled:
        return None
    if cfg.amp_dtype == "bf16":
        return torch.bfloat16
    if cfg.amp_dtype == "fp16":
        return torch.float16
    # including_emulation=False: by default the check also says yes where bf16 merely runs, emulated
    # and slow, on a GPU without bf16 units (T4 in g4dn, compute capability 7.5).
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.float16
    return torch.bfloat16


def grad_scaler_for(amp_dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none."""
    if amp_dtype == torch.float16 and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """No weight decay on biases and normalisation weights (1-d tensors), as in torchvision's recipes."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.opt == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int, steps_done: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step linear warm-up, then cosine decay to zero, positioned after ``steps_done`` steps.

    The factor is a function of the fraction of training done (step / (epochs x steps_per_epoch)), and a
    resumed run builds the scheduler at its own position (epochs done x its steps per epoch + steps done)
    rather than loading a saved step count: a run resumed with twice or half the processes has half or
    twice the steps per epoch, and a saved count would put it at another point of the curve. On resume
    ``optimizer`` must already hold its loaded state (which carries each group's ``initial_lr``).
    """
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.lr_warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    # LambdaLR takes the position as the index of the last step done (-1: none); it sets the lr to
    # factor(steps_done) right away.
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=steps_done - 1)


def wrap(model: nn.Module, cfg: TrainConfig, ctx: DistContext) -> nn.Module:
    """DDP (when distributed) and torch.compile around the plain model; redone when the frozen set changes."""
    wrapped = model
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if cfg.compile:
        wrapped = torch.compile(wrapped)
    return wrapped


@dataclass
class TrainState:
    """Everything a training step uses, as one value: what ``train_one_epoch`` runs and what
    ``checkpoint.capture_checkpoint`` saves. A new part of the step (gradient clipping, another average
    of the weights) is a field here and its use in ``train_one_epoch``, not another argument threaded
    through every caller.

    ``model`` is the plain module: its ``state_dict`` is the checkpoint's and the artifact's, without
    DDP's or torch.compile's key prefixes, and evaluation and freezing act on it. ``wrapped`` is what
    the steps run, DDP and/or torch.compile around ``model`` (:func:`wrap`), rebuilt when the frozen
    set changes; both share the same parameters.
    """

    model: nn.Module
    wrapped: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    amp_dtype: torch.dtype | None
    on_step: Callable[[], None] | None = None  # after every optimizer step: --keep ema's average


def train_one_epoch(
    state: TrainState,
    loader: torch.utils.data.DataLoader,
    meter: Accumulator,
    ctx: DistContext,
    cfg: TrainConfig,
    preemption: Preemption,
    progress: Any = None,
) -> tuple[int, int]:
    """Train over ``loader``; returns (steps, images) done, fewer steps than its length if preempted.

    ``progress`` is a tqdm bar (rank 0, when asked for) or None.
    """
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    optimizer, scaler, amp_dtype = state.optimizer, state.scaler, state.amp_dtype
    steps = images_done = 0
    last = len(loader) - 1
    for images, targets in loader:
        # Every rank polls at the same steps (they all have len(loader) steps), so the collective
        # lines up. Also before the last step: stopping there saves the checkpoint at once, where
        # finishing the epoch would first run the whole validation pass inside the grace period.
        if (steps % STOP_POLL_STEPS == 0 or steps == last) and distributed.any_rank(
            ctx, preemption.requested
        ):
            return steps, images_done
        images = to_model_input(images, ctx.device, memory_format)  # the loaders send uint8
        targets = targets.to(ctx.device, non_blocking=True)
        with torch.autocast(ctx.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = state.wrapped(images)
            loss = state.criterion(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        state.scheduler.step()
        if state.on_step is not None:
            state.on_step()
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
        images = to_model_input(images, ctx.device, memory_format)  # the loaders send uint8
        targets = targets.to(ctx.device, non_blocking=True)
        logits = model(images)
        meter.update(logits, targets, criterion(logits, targets))
    return meter.reduce(ctx)
