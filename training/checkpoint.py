"""One checkpoint file per run, written atomically by rank 0, loadable with ``weights_only=True``.

Like torchvision's references it is one dict (model, optimizer, scaler, epoch, args) plus what an
exact resume needs: the step within the epoch (a SIGTERM checkpoint is taken mid-epoch), every rank's
RNG state, and the metric history so far. The LR scheduler is not saved: its position is rebuilt from
the epochs and steps done (``loop.build_scheduler``), which also holds when the resumed run has another
number of processes and so another number of steps per epoch. Only plain containers, numbers, strings and
tensors go in, so loading it never unpickles arbitrary objects.

What goes in and how it comes back out are here, next to :data:`FORMAT_VERSION`: :func:`capture_checkpoint`
and :func:`restore_checkpoint`, and :data:`RESUME_KEYS`, the settings a resumed run must share with the
run that wrote the checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import distributed
from .config import ConfigError, TrainConfig
from .distributed import DistContext

if TYPE_CHECKING:  # only for annotations: artifact imports this module, and keep imports artifact
    from .keep import KeptWeights
    from .loop import TrainState
    from .metrics import Accumulator

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1

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


def checkpoint_path(checkpoint_dir: Path) -> Path:
    return Path(checkpoint_dir) / CHECKPOINT_NAME


def staging_dir(directory: Path) -> Path:
    """Where a file bound for ``directory`` is written before it is renamed into place.

    A hidden sibling, ``<parent>/.<name>-tmp``, not ``directory`` itself: SageMaker mirrors
    ``/opt/ml/checkpoints`` to S3 as files appear and disappear ("If a checkpoint is deleted in the
    SageMaker AI container, it will also be deleted in the S3 folder",
    https://docs.aws.amazon.com/sagemaker/latest/dg/model-checkpoints.html), so a temporary file in it
    is an upload of a whole checkpoint followed by an S3 delete, which the training role may not do
    (no ``s3:DeleteObject`` on ``checkpoints/*``). A sibling because ``os.replace`` is atomic only
    within one file system (https://docs.python.org/3/library/os.html#os.replace): the parent is on
    the same one unless ``directory`` is a mount point (on SageMaker it is a plain directory that an
    agent syncs, so ``/opt/ml/.checkpoints-tmp`` is next to it on the same disk). Where the sibling is
    on another device or cannot be created, the directory itself is used: atomicity comes first.
    """
    directory = Path(directory)
    sibling = directory.parent / f".{directory.name}-tmp"
    try:
        sibling.mkdir(exist_ok=True)
        if os.stat(sibling).st_dev == os.stat(directory).st_dev:
            return sibling
        sibling.rmdir()
    except OSError:
        pass
    log.warning("writing temporary files inside %s (%s is not usable on its file system)", directory, sibling)
    return directory


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable: fsync of the file alone does not write the directory
    entry ("an explicit fsync() on a file descriptor for the directory is also needed",
    https://man7.org/linux/man-pages/man2/fsync.2.html)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: Path) -> Path:
    """``torch.save`` that never leaves a torn or partial ``path``, nor a temporary file next to it.

    Written in :func:`staging_dir`, fsynced, renamed over ``path`` (atomic: a reader or an S3 sync sees
    the old file or the new one), and the directory fsynced, so that after a crash the new name is there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(path.parent)
    tmp = staging / f".{path.name}.tmp-{os.getpid()}"
    try:
        torch.save(obj, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    if staging != path.parent:
        with contextlib.suppress(OSError):  # still in use by another writer: it removes it
            staging.rmdir()
    return path


def save_checkpoint(state: dict[str, Any], checkpoint_dir: Path) -> Path:
    """Replace the checkpoint atomically (:func:`atomic_save`): a kill mid-write never leaves a torn
    file, and SageMaker's sync of the checkpoint dir only ever sees whole checkpoints."""
    return atomic_save({**state, "format_version": FORMAT_VERSION}, checkpoint_path(checkpoint_dir))


def load_checkpoint(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    _check_format(state, path)
    return state


def _check_format(state: dict[str, Any], path: Path) -> None:
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} is checkpoint format {state.get('format_version')}, expected {FORMAT_VERSION}"
        )


def find_resume_checkpoint(resume: str, checkpoint_dir: Path | None) -> Path | None:
    """``--resume``: an explicit file, ``never``, or ``auto`` (the checkpoint dir's file if it exists)."""
    if resume == "never":
        return None
    if resume != "auto":
        return Path(resume)
    if checkpoint_dir is None:
        return None
    path = checkpoint_path(checkpoint_dir)
    return path if path.is_file() else None


def describe_checkpoint(path: Path | None, host: str) -> dict[str, Any]:
    """What one rank knows about its resume candidate, small enough to all-gather: where it is, which
    run wrote it and how far that run got, or why it cannot be read.

    Read with ``mmap=True``: only the pickled part (numbers, strings, the settings) comes off the disk,
    the tensors stay mapped and unread (https://docs.pytorch.org/docs/stable/generated/torch.load.html,
    ``mmap``), so every rank can look at a checkpoint of any size for the cost of its header.
    """
    report: dict[str, Any] = {"host": host, "path": None if path is None else str(path)}
    if path is None or not path.is_file():
        return report
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        _check_format(state, path)
        report.update(
            run_started=float(state.get("run_started", 0.0)),
            epoch=int(state["epoch"]),
            step=int(state["step"]),
            args=dict(state.get("args", {})),
        )
    except Exception as exc:  # reported to every rank, which then all stop with the same message
        report["error"] = f"{type(exc).__name__}: {exc}"
    return report


def resume_position(report: dict[str, Any]) -> tuple[float, int, int]:
    """The order of checkpoints: a later run first (--resume never started one; an older run's files on
    another host are stale), then more training done (one host's copy may lag behind the newest save)."""
    return report["run_started"], report["epoch"], report["step"]


def where(report: dict[str, Any]) -> str:
    """``host:path`` of a :func:`describe_checkpoint` report, as messages name a checkpoint."""
    return f"{report['host']}:{report['path']}"


def choose_resume_source(reports: Sequence[dict[str, Any]], resume: str, keys: Sequence[str]) -> int | None:
    """The rank whose checkpoint the run continues from, given every rank's :func:`describe_checkpoint`.

    None (start from scratch) only when no rank has a checkpoint. Otherwise the newest (by
    :func:`resume_position`) wins, whichever host holds it: under torchrun's c10d rendezvous the ranks follow
    the hosts' sorted names, so a replacement host can become rank 0 with an empty disk while another
    host holds the checkpoint. Raises :class:`ConfigError` (the same on every rank) when a rank's file
    does not load, when an explicit ``--resume`` file is on no host, or when two hosts hold checkpoints
    equally far into the same run with different ``keys`` settings: no rule says which one is right.
    """
    broken = {where(r): r["error"] for r in reports if "error" in r}
    if broken:
        detail = "; ".join(f"{where}: {error}" for where, error in broken.items())
        raise ConfigError(
            f"cannot read a checkpoint to resume from ({detail}); remove it or pass --resume never"
        )
    found = [(rank, r) for rank, r in enumerate(reports) if "epoch" in r]
    if not found:
        if resume not in ("auto", "never"):
            raise ConfigError(f"--resume {resume}: no host has this file")
        return None
    newest = max(resume_position(r) for _, r in found)
    candidates = [(rank, r) for rank, r in found if resume_position(r) == newest]
    settings = {
        where(r): json.dumps({k: r["args"].get(k) for k in keys}, sort_keys=True) for _, r in candidates
    }
    if len(set(settings.values())) > 1:
        detail = "; ".join(f"{where}: {text}" for where, text in settings.items())
        raise ConfigError(
            f"checkpoints at the same epoch and step disagree on the run's settings ({detail}); "
            "remove all but one of them"
        )
    return candidates[0][0]


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


def capture_checkpoint(
    state: TrainState,
    kept: KeptWeights,
    ctx: DistContext,
    cfg: TrainConfig,
    *,
    epoch: int,
    step: int,
    meter: Accumulator | None,
    history: list[dict[str, Any]],
    run_started: float,
) -> dict[str, Any] | None:
    """The checkpoint after ``epoch`` epochs + ``step`` steps, for :func:`save_checkpoint`: on rank 0,
    None on the others. Every rank must call it: it gathers each rank's RNG states and its training sums
    of the unfinished epoch (``meter``; None at an epoch boundary), which a mid-epoch resume restores
    rank by rank. The rest is rank 0's: DDP keeps the weights and optimizer states equal across ranks.
    """
    rngs = distributed.gather_objects(ctx, rng_state())
    sums = meter.sums.cpu() if meter is not None and meter.sums is not None else None
    partials = distributed.gather_objects(ctx, sums)
    if not ctx.is_main:
        return None
    return {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scaler": state.scaler.state_dict() if state.scaler is not None else {},
        "epoch": epoch,
        "step": step,
        "history": history,
        "rng": rngs,
        "partial_train": partials,
        "args": cfg.to_dict(),
        "run_started": run_started,
        "kept": kept.state_dict(),
    }


@dataclass
class ResumePoint:
    """Where a run starts: what :func:`restore_checkpoint` does not put straight into the model, the
    optimizer and the scaler, for the epoch loop (or a fresh run's start)."""

    run_started: float  # kept across resumes: it orders checkpoints of different runs (resume_position)
    epoch: int = 0  # epochs done
    step: int = 0  # steps done of the next epoch (a SIGTERM checkpoint's)
    history: list[dict[str, Any]] = field(default_factory=list)
    partial_train: torch.Tensor | None = None  # this rank's training sums of that epoch's steps done
    kept: dict[str, Any] | None = None  # for KeptWeights.load_state_dict, once the weights are in


def restore_checkpoint(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    ctx: DistContext,
) -> ResumePoint:
    """Load a :func:`capture_checkpoint` dict into this rank's model, optimizer and scaler and RNGs.

    Before the LR scheduler exists: it is built afterwards at the returned position (the checkpoint
    has none, see the module docstring), on the optimizer state loaded here. A checkpoint from another
    number of processes resumes at an epoch boundary only: its RNG states and partial sums are one per
    rank of the run that wrote it.
    """
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    epoch, step = state["epoch"], state["step"]
    partial = None
    if len(state["rng"]) == ctx.world_size:
        set_rng_state(state["rng"][ctx.rank])
        partial = state["partial_train"][ctx.rank] if step else None
    elif step:
        raise ConfigError("a mid-epoch checkpoint resumes only with the same number of processes")
    return ResumePoint(
        run_started=float(state.get("run_started", 0.0)),
        epoch=epoch,
        step=step,
        history=list(state["history"]),
        partial_train=partial,
        kept=state.get("kept"),
    )


def rng_state() -> dict[str, Any]:
    """This process's RNG states (Python's as its integer tuple, so no pickled objects are needed)."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
