"""Which weights the artifact gets (``--keep``): the last epoch's, the best epoch's, or a moving average.

- ``last`` (default): the model after the last epoch.
- ``best``: the epoch with the highest validation top-1, the first of equals. Rank 0 copies its weights
  to the CPU when a new best appears (the other ranks note only the epoch) and sends them to the others
  at the end, which the test set's sharded evaluation needs.
- ``ema``: an exponential moving average of the weights and buffers, updated every ``--ema-steps``
  optimizer steps, as torchvision's references/classification ``--model-ema`` does (``AveragedModel``
  with ``use_buffers=True``, and during the lr warm-up restarted at every update, i.e. a copy of the
  weights). It is evaluated on the validation set at the end, so the recorded validation metrics are
  those of the weights the artifact gets.

Both keep their state in the checkpoint (:meth:`KeptWeights.state_dict`), so that a resumed run keeps
what the uninterrupted one would have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import distributed
from .artifact import export_state_dict
from .config import TrainConfig
from .distributed import DistContext
from .loop import evaluate

# torchvision's --model-ema-decay default (0.99998) belongs to ImageNet-1k's 1,281,167 training images.
# Its adjustment, alpha = (1 - decay) x processes x batch x ema_steps / epochs, equals (1 - decay) x
# dataset size / number of EMA updates, the dataset size being left out as a constant of the setup
# (references/classification/train.py, --model-ema). Put back as ImageNet's, it keeps the default's
# meaning on any dataset: the average spans the last 1 / ((1 - decay) x 1,281,167), about 4 %, of the
# updates. Left out, on dogImages (6,680 images, batch 32, 10 epochs) the average would still be 88 %
# the initial weights at the end.
IMAGENET_TRAIN_IMAGES = 1_281_167


def ema_update_decay(decay: float, updates: int) -> float:
    """The decay per EMA update for ``--ema-decay`` over a run of ``updates`` updates."""
    alpha = min(1.0, (1.0 - decay) * IMAGENET_TRAIN_IMAGES / max(1, updates))
    return 1.0 - alpha


class KeptWeights:
    """Tracks the weights ``cfg.keep`` asks for during training and puts them into ``model`` at the end."""

    def __init__(self, cfg: TrainConfig, model: nn.Module, ctx: DistContext, steps_per_epoch: int) -> None:
        self.keep = cfg.keep
        self.model = model
        self.ctx = ctx
        self.best_epoch = 0  # none yet
        self.best_acc1 = -math.inf
        self.best_state: dict[str, torch.Tensor] | None = None  # rank 0 only
        self.average: AveragedModel | None = None
        self.steps = 0
        if self.keep == "ema":
            self.every = cfg.ema_steps
            self.warmup_steps = cfg.lr_warmup_epochs * steps_per_epoch
            self.decay = ema_update_decay(cfg.ema_decay, cfg.epochs * steps_per_epoch // cfg.ema_steps)
            # On every rank, on the model's device: the validation pass at the end is sharded too.
            self.average = AveragedModel(
                model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True
            )

    @property
    def on_step(self) -> Callable[[], None] | None:
        """What train_one_epoch calls after each optimizer step (nothing unless ``ema``)."""
        return self._update_average if self.average is not None else None

    def _update_average(self) -> None:
        assert self.average is not None
        self.steps += 1
        if self.steps % self.every:
            return
        self.average.update_parameters(self.model)
        if self.steps <= self.warmup_steps:
            # Weights that move fast under the rising lr would only drag the average behind.
            self.average.n_averaged.fill_(0)

    def end_epoch(self, record: dict[str, Any]) -> None:
        """After the epoch's validation (all ranks: the metrics are reduced, so they agree)."""
        if self.keep != "best" or not record["val_acc1"] > self.best_acc1:
            return
        self.best_epoch, self.best_acc1 = int(record["epoch"]), float(record["val_acc1"])
        if self.ctx.is_main:
            self.best_state = export_state_dict(self.model)

    def state_dict(self) -> dict[str, Any]:
        """For the checkpoint (rank 0's): tensors, numbers and strings only."""
        if self.keep == "best":
            return {"epoch": self.best_epoch, "val_acc1": self.best_acc1, "model": self.best_state or {}}
        if self.average is not None:
            return {"steps": self.steps, "average": self.average.state_dict()}
        return {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        if self.keep == "best":
            self.best_epoch, self.best_acc1 = int(state["epoch"]), float(state["val_acc1"])
            if self.ctx.is_main and state["model"]:
                self.best_state = dict(state["model"])
        elif self.average is not None:
            self.steps = int(state["steps"])
            self.average.load_state_dict(state["average"])

    def apply(
        self, history: Sequence[dict[str, Any]], valid_loader: Any, channels_last: bool
    ) -> dict[str, Any]:
        """Put the kept weights into the model on every rank; returns what they are, with their
        validation metrics (for metrics.json and the artifact's metadata)."""
        record = history[-1]
        if self.keep == "best" and self.best_epoch not in (0, record["epoch"]):
            if self.ctx.is_main:
                assert self.best_state is not None
                self.model.load_state_dict(self.best_state)
            distributed.broadcast_state(self.ctx, self.model)
            record = next(r for r in history if r["epoch"] == self.best_epoch)
        kept: dict[str, Any] = {"keep": self.keep, "epoch": record["epoch"]}
        if self.average is not None:
            self.model.load_state_dict(self.average.module.state_dict())
            # Each rank averaged the BatchNorm statistics of its own batches: use rank 0's, as the
            # epochs' validation and the checkpoint do.
            distributed.broadcast_state(self.ctx, self.model)
            record = evaluate(self.model, valid_loader, self.ctx, channels_last)
            record = {f"val_{k}": v for k, v in record.items()}
            kept.update(ema_update_decay=self.decay, ema_steps=self.every)
        kept.update({k: record[k] for k in ("val_loss", "val_acc1", "val_acc5")})
        return kept
