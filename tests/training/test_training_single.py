"""``python -m training.train`` as one process (the laptop path): bf16 autocast on the CPU, a DataLoader
worker process (persistent workers, seeded augmentation in the worker)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from training_helpers import CLASSES, TRAIN_ARGS, clean_env, run_command

from training import register
from training.artifact import load_artifact

pytestmark = pytest.mark.slow


def test_one_process_with_amp_trains_and_writes_the_artifact(dataset, tmp_path):
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "training.train", "--data-dir", str(dataset), "--model-dir", str(out),
           *TRAIN_ARGS, "--epochs", "1", "--amp", "--threads", "2", "--checkpoint-dir", "none",
           "--workers", "1"]  # fmt: skip
    commit = "0123456789abcdef0123456789abcdef01234567"  # what launch.py passes a SageMaker job
    proc = run_command(cmd, env={**clean_env(), "DOGBREED_GIT_COMMIT": commit})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "mixed precision: torch.bfloat16" in proc.stdout
    assert "1 process(es) on cpu, 2 CPU threads each" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["complete"] and metrics["world_size"] == 1 and len(metrics["epochs"]) == 1
    assert metrics["epochs"][0]["val_samples"] == 40  # one process sees the whole validation set
    # What training.register needs, and accepts: a finished, tested run with its class count and commit.
    assert metrics["num_classes"] == CLASSES and metrics["git_commit"] == commit
    register.check_metrics(metrics)
    assert not (out / "checkpoints").exists()  # --checkpoint-dir none
    model, config = load_artifact(out)
    assert all(t.dtype == torch.float32 for t in model.state_dict().values() if t.is_floating_point())
    assert config.metadata["world_size"] == 1
