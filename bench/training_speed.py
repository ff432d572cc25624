"""Training throughput on CPU: images/s per process with 1 and 2 DDP processes under torchrun.

Runs :mod:`bench.training_worker` with ``torchrun --standalone --nproc-per-node N`` on a small
synthetic ImageFolder (``training.synthetic``), so the data path, model, optimizer and DDP set-up
are the training package's own. Sizes are tiny (a small backbone, small crops): on a 2-core CPU the
absolute numbers say little about a GPU job, but the comparisons hold: does the input pipeline keep
up with a step, what do channels_last and bf16 autocast do, how does a second process scale.

The GPU side of the issue (the same on a GPU against NVIDIA's published ResNet-50 AMP reference,
about 2,470 img/s on one A100 80GB) is not measured on a CPU-only host; the report gives the
command to run there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .timing import Stats

REPO_ROOT = Path(__file__).resolve().parents[1]
GPU_COMMAND = (
    "torchrun --standalone --nproc-per-node 1 -m bench.training_worker --data-dir DATA "
    "--arch resnet50 --image-size 224 --batch-size 256 --workers 8 --steps 20 --repeats 3"
)


def launch(data_dir: Path, processes: int, options: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    """One torchrun launch; the rank-0 ``BENCH_RESULT`` JSON."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "bench.training_worker",
        "--data-dir",
        str(data_dir),
    ]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("OMP_NUM_THREADS", None)  # training.distributed sizes the thread pool per process itself
    started = time.perf_counter()
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments, no shell
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"torchrun with {processes} process(es) failed:\n{result.stderr[-3000:]}")
    for line in result.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            measured = json.loads(line.split(" ", 1)[1])
            measured["wall_seconds"] = time.perf_counter() - started
            return measured
    raise RuntimeError(f"no BENCH_RESULT line in the output:\n{result.stdout[-2000:]}")


def run(
    arch: str = "resnet18",
    image_size: int = 128,
    batch_size: int = 16,
    steps: int = 4,
    repeats: int = 3,
    per_class: int = 32,
    loader_workers: int = 1,
    process_counts: tuple[int, ...] = (1, 2),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    from training.synthetic import generate

    options = {
        "arch": arch,
        "image_size": image_size,
        "batch_size": batch_size,
        "steps": steps,
        "repeats": repeats,
        "workers": loader_workers,
    }
    out: dict[str, Any] = {"options": options, "per_class": per_class, "runs": {}, "gpu_command": GPU_COMMAND}
    with tempfile.TemporaryDirectory(prefix="bench-train-data-") as tmp:
        data_dir = generate(
            Path(tmp) / "data", classes=4, per_class=per_class, size=image_size + image_size // 4
        )
        for processes in process_counts:
            measured = launch(data_dir, processes, options)
            rates = measured.pop("images_per_sec_per_process")
            measured["images_per_sec_per_process"] = {
                name: Stats.of(values).as_dict() for name, values in rates.items()
            }
            out["runs"][str(processes)] = measured
            summary = ", ".join(
                f"{name} {stats['median']:.1f}"
                for name, stats in measured["images_per_sec_per_process"].items()
            )
            log(f"  {processes} process(es): img/s per process: {summary}")
    return out
