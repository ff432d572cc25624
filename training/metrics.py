"""Counting correct predictions, the per-epoch log line, ``metrics.json`` and the training-curve PNG.

Accuracy is ``correct / samples`` with both summed over every batch of every rank, so a short last
batch or an uneven shard weighs exactly as many samples as it has (the course code this replaces
averaged per-batch accuracies with a floor division by the number of batches).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .distributed import DistContext, all_reduce_sum

# SageMaker metric definitions: each regex's first group is the value (CloudWatch namespace
# /aws/sagemaker/TrainingJobs).
# Numbers are printed with format_float below, so [-+0-9.eE]+ matches them, nan and inf excepted
# (CloudWatch cannot store those anyway).
_NUMBER = r"([-+0-9.eE]+)"
METRIC_DEFINITIONS: tuple[dict[str, str], ...] = (
    {"Name": "train:loss", "Regex": rf"\btrain_loss={_NUMBER}"},
    {"Name": "train:acc1", "Regex": rf"\btrain_acc1={_NUMBER}"},
    {"Name": "validation:loss", "Regex": rf"\bval_loss={_NUMBER}"},
    {"Name": "validation:acc1", "Regex": rf"\bval_acc1={_NUMBER}"},
    {"Name": "validation:acc5", "Regex": rf"\bval_acc5={_NUMBER}"},
    {"Name": "train:images_per_sec", "Regex": rf"\bimages_per_sec={_NUMBER}"},
    {"Name": "train:lr", "Regex": rf"\blr={_NUMBER}"},
    {"Name": "test:acc1", "Regex": rf"\btest_acc1={_NUMBER}"},
    {"Name": "test:acc5", "Regex": rf"\btest_acc5={_NUMBER}"},
)


class Accumulator:
    """Sums of loss, top-1 and top-k hits and samples on this rank; :meth:`reduce` sums over ranks."""

    def __init__(self, topk: int = 5) -> None:
        self.topk = topk
        self.sums: torch.Tensor | None = None  # loss*n, correct1, correctk, n; on the batch's device

    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> None:
        """Adds one batch with device operations only: nothing is copied to or read from the host."""
        n = targets.numel()
        k = min(self.topk, logits.shape[1])
        hits = logits.detach().topk(k, dim=1).indices.eq(targets.view(-1, 1))
        batch = torch.stack(
            [
                loss.detach().double() * n,
                hits[:, 0].sum().double(),
                hits.any(dim=1).sum().double(),
                # A fill kernel with n as its argument. torch.tensor(n, device=cuda) would copy n from
                # host memory, and a blocking copy synchronises the stream (memcpy_and_sync in ATen's
                # cuda/Copy.cu): the host would wait for every queued step, each step.
                torch.full((), n, dtype=torch.float64, device=logits.device),
            ]
        )
        self.sums = batch if self.sums is None else self.sums + batch

    def reduce(self, ctx: DistContext) -> dict[str, float]:
        """Mean loss, top-1 and top-k accuracy over all samples of all ranks (NaN if there were none)."""
        sums = self.sums if self.sums is not None else torch.zeros(4, dtype=torch.float64)
        loss_sum, correct1, correctk, n = all_reduce_sum(ctx, sums).tolist()
        if n == 0:
            return {"loss": math.nan, "acc1": math.nan, "acc5": math.nan, "samples": 0}
        return {"loss": loss_sum / n, "acc1": correct1 / n, "acc5": correctk / n, "samples": int(n)}


def format_float(value: float) -> str:
    return f"{value:.6g}"


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """``epoch=3/10 train_loss=... val_acc1=... images_per_sec=...``: one line, key=value, regex-friendly."""
    fields = [f"epoch={record['epoch']}/{epochs}"]
    for key in (
        "train_loss",
        "train_acc1",
        "val_loss",
        "val_acc1",
        "val_acc5",
        "lr",
        "images_per_sec",
        "epoch_seconds",
    ):
        fields.append(f"{key}={format_float(record[key])}")
    return " ".join(fields)


def test_line(record: dict[str, Any]) -> str:
    return (
        "test: "
        + " ".join(f"{key}={format_float(record[key])}" for key in ("test_loss", "test_acc1", "test_acc5"))
        + f" test_samples={record['test_samples']}"
    )


def write_metrics(output_dir: Path, history: Sequence[dict[str, Any]], summary: dict[str, Any]) -> Path:
    path = Path(output_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"epochs": list(history), **summary}, indent=2, sort_keys=True) + "\n")
    return path


_warned_no_matplotlib = False


def plot_curves(output_dir: Path, history: Sequence[dict[str, Any]]) -> Path | None:
    """``training_curves.png``: loss and accuracy per epoch. Agg backend: no display needed.

    Returns None where matplotlib is not installed (the training DLC has it, as a dependency of seaborn;
    a bare PyTorch environment may not), with one warning per process although it is called every
    epoch; metrics.json has the same numbers.
    """
    global _warned_no_matplotlib
    try:
        import matplotlib
    except ImportError:
        if not _warned_no_matplotlib:
            _warned_no_matplotlib = True
            logging.getLogger(__name__).warning(
                "matplotlib is not installed: no training_curves.png (metrics.json has the numbers)"
            )
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in history], "o-", label="validation")
    ax_loss.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    losses = [r[k] for r in history for k in ("train_loss", "val_loss") if r[k] > 0]
    if losses and max(losses) > 20 * min(losses):  # an early spike would flatten the rest of the curve
        ax_loss.set_yscale("log")
    ax_acc.plot(epochs, [r["train_acc1"] for r in history], "o-", label="train top-1")
    ax_acc.plot(epochs, [r["val_acc1"] for r in history], "o-", label="validation top-1")
    ax_acc.plot(epochs, [r["val_acc5"] for r in history], "o--", label="validation top-5")
    ax_acc.set(title="Accuracy", xlabel="epoch", ylabel="fraction correct", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    path = Path(output_dir) / "training_curves.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
