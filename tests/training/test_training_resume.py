"""Spot interruption: SIGTERM mid-epoch, a checkpoint, a restart, and the same result as no interruption."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import torch
from training_helpers import REPO, TRAIN_ARGS, clean_env, run_training, torchrun_command

from training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
COMPARED = ("epoch", "train_loss", "train_acc1", "val_loss", "val_acc1", "val_acc5", "val_samples", "lr")


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, dataset):
    """The reference run's command, sent SIGTERM shortly after epoch 1 finished, i.e. during epoch 2."""
    model_dir = tmp_path_factory.mktemp("interrupted") / "model"
    log_path = model_dir.parent / "first.log"
    cmd = torchrun_command(2, "--data-dir", str(dataset), "--model-dir", str(model_dir), *TRAIN_ARGS)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(  # noqa: S603
            cmd, cwd=REPO, env=clean_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 150
            # The curves PNG is written after epoch 1's checkpoint; epoch 2 takes a few seconds on 2 cores.
            while not (model_dir / "training_curves.png").exists():
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "epoch 1 never finished"
                time.sleep(0.05)
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)  # to torchrun, which forwards it to both workers
            returncode = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its workers
                proc.wait()
    checkpoint = load_checkpoint(model_dir / "checkpoints" / "checkpoint.pt")
    return model_dir, returncode, log_path.read_text(), checkpoint


def test_sigterm_saves_a_mid_epoch_checkpoint_and_stops(interrupted):
    model_dir, returncode, output, checkpoint = interrupted
    assert returncode != 0
    assert "SIGTERM: stopping at epoch 2 step" in output
    assert checkpoint["epoch"] == 1 and 0 < checkpoint["step"] < 10, (checkpoint["epoch"], checkpoint["step"])
    assert len(checkpoint["history"]) == 1
    assert len(checkpoint["rng"]) == 2 and len(checkpoint["partial_train"]) == 2  # one per rank
    assert not (model_dir / "model.pt").exists(), "no artifact from an unfinished run"


def test_resumed_run_ends_like_the_uninterrupted_one(interrupted, ddp_run, dataset):
    model_dir, _, _, checkpoint = interrupted
    resumed = run_training(model_dir, dataset)
    assert f"resumed at epoch 2 step {checkpoint['step']} of 10" in resumed.output
    assert len(resumed.epoch_lines()) == 5  # epochs 2..6 only: epoch 1 is not trained again
    reference = ddp_run.metrics["epochs"]
    assert len(resumed.metrics["epochs"]) == len(reference) == 6
    for got, want in zip(resumed.metrics["epochs"], reference, strict=True):
        for key in COMPARED:
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), (got["epoch"], key)
    for key in ("test_loss", "test_acc1", "test_acc5"):
        assert resumed.metrics[key] == pytest.approx(ddp_run.metrics[key], rel=1e-6, abs=1e-9)
    got = torch.load(model_dir / "model.pt", weights_only=True)
    want = torch.load(ddp_run.model_dir / "model.pt", weights_only=True)
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
