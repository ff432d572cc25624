"""One checkpoint file per run, written atomically by rank 0, loadable with ``weights_only=True``.

Like torchvision's references it is one dict (model, optimizer, scaler, epoch, args) plus what an
exact resume needs: the step within the epoch (a SIGTERM checkpoint is taken mid-epoch), every rank's
RNG state, and the metric history so far. The LR scheduler is not saved: its position is rebuilt from
the epochs and steps done (``loop.build_scheduler``), which also holds when the resumed run has another
number of processes and so another number of steps per epoch. Only plain containers, numbers, strings and
tensors go in, so loading it never unpickles arbitrary objects.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


def checkpoint_path(checkpoint_dir: Path) -> Path:
    return Path(checkpoint_dir) / CHECKPOINT_NAME


def save_checkpoint(state: dict[str, Any], checkpoint_dir: Path) -> Path:
    """Write to a temporary file and rename it over the old one: a kill mid-write never leaves a torn file.

    SageMaker uploads files in the checkpoint dir as they change; the rename makes the upload see only
    complete checkpoints.
    """
    path = checkpoint_path(checkpoint_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({**state, "format_version": FORMAT_VERSION}, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} is checkpoint format {state.get('format_version')}, expected {FORMAT_VERSION}"
        )
    return state


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
