"""Helpers of the training tests: the reference run's settings and running torchrun in a subprocess.

The settings are the smallest that still learn: 4 classes, ResNet-18 at 40 px, 6 epochs. Two processes
with one CPU thread each keep a run to about 20 s on a 2-core machine. (A module with its own name, not
conftest, so that test modules can import it whatever other conftest.py pytest loaded last.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from training.config import TrainConfig, parse_config
from training.distributed import DistContext

REPO = Path(__file__).resolve().parents[2]

CLASSES = 4
TRAIN_ARGS = (
    "--arch", "resnet18", "--weights", "none", "--epochs", "6", "--batch-size", "8", "--image-size", "40",
    "--opt", "adamw", "--lr", "0.002", "--min-crop-scale", "0.5", "--workers", "0", "--seed", "7",
    "--progress", "false",
)  # fmt: skip


def clean_env() -> dict[str, str]:
    """The test process's environment without anything that would make train.py think it is on SageMaker
    or already under torchrun."""
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_") and k not in drop}
    env["PYTHONPATH"] = str(REPO)
    return env


def torchrun_command(nproc: int, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
        "--standalone", "-m", "training.train", *args,
    ]  # fmt: skip


def run_command(cmd: list[str], timeout: float = 180, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` in its own process group, all of which is killed on timeout: torchrun's workers
    would otherwise outlive a killed torchrun."""
    proc = subprocess.Popen(  # noqa: S603 - this interpreter with fixed arguments, no shell
        cmd, cwd=kwargs.pop("cwd", REPO), env=kwargs.pop("env", None) or clean_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@dataclass(frozen=True)
class Run:
    model_dir: Path
    output: str
    metrics: dict

    def epoch_lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if " epoch=" in line]


def run_training(model_dir: Path, data_dir: Path, nproc: int = 2, extra: tuple[str, ...] = ()) -> Run:
    cmd = torchrun_command(
        nproc, "--data-dir", str(data_dir), "--model-dir", str(model_dir), *TRAIN_ARGS, *extra
    )
    proc = run_command(cmd)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return Run(model_dir, output, json.loads((model_dir / "metrics.json").read_text()))


# One process on the CPU, for tests that call the loop's functions directly.
CPU = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def config(tmp_path: Path, *argv: str) -> TrainConfig:
    for split in ("train", "valid"):
        (tmp_path / "data" / split / "001.Affenpinscher").mkdir(parents=True, exist_ok=True)
    base = ["--data-dir", str(tmp_path / "data"), "--model-dir", str(tmp_path / "model")]
    return parse_config([*base, "--arch", "resnet18", *argv], environ={})
