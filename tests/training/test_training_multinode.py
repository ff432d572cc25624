"""Two torchrun nodes on loopback, as two EC2 hosts without a shared disk: each node is its own torchrun
(static rendezvous, one gloo process each) with its own model and checkpoint dirs.

The case: a spot host was replaced, and the new one became rank 0 (torchrun's c10d rendezvous orders
ranks by host name) with an empty checkpoint dir, while the other host still holds the checkpoint.
When only rank 0 looked, the run started over at epoch 1 without a word.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from training_helpers import REPO, TRAIN_ARGS, clean_env

from training.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
EPOCHS = ("--epochs", "2", "--threads", "1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(cmd: list[str], log: Path, cwd: Path = REPO) -> subprocess.Popen:
    # A log file rather than a pipe: two nodes run at once, and a full pipe would stall one of them.
    with open(log, "w") as out:
        return subprocess.Popen(  # noqa: S603 - this interpreter with fixed arguments, no shell
            cmd, cwd=cwd, env=clean_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its worker
    proc.wait()


@pytest.fixture(scope="module")
def epoch_one_checkpoint(tmp_path_factory, dataset) -> Path:
    """A 2-epoch run's checkpoint after epoch 1: one process, killed (as a host dies) once it is saved."""
    model_dir = tmp_path_factory.mktemp("first") / "model"
    checkpoint = model_dir / "checkpoints" / "checkpoint.pt"
    cmd = [sys.executable, "-m", "training.train", "--data-dir", str(dataset), "--model-dir", str(model_dir),
           *TRAIN_ARGS, *EPOCHS]  # fmt: skip
    proc = start(cmd, model_dir.parent / "first.log")
    try:
        deadline = time.monotonic() + 150
        while not checkpoint.exists():
            assert proc.poll() is None, (model_dir.parent / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "epoch 1 never finished"
            time.sleep(0.05)
    finally:
        stop(proc)
    state = load_checkpoint(checkpoint)
    assert (state["epoch"], state["step"]) == (1, 0), "killed after epoch 2, not during it"
    return checkpoint


def node_command(node_rank: int, port: int, *args: str) -> list[str]:
    """One node of two: torchrun's static rendezvous, node rank 0 hosting it on 127.0.0.1:``port``."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
        "--node-rank", str(node_rank), "--master-addr", "127.0.0.1", "--master-port", str(port),
        "-m", "training.train", *args,
    ]  # fmt: skip


def run_two_nodes(base: Path, node_args: list[list[str]], cwds: list[Path] | None = None) -> list[str]:
    """Node rank k runs ``training.train`` with ``node_args[k]`` in ``cwds[k]``; each node's output."""
    port = free_port()
    logs = [base / f"node{k}.log" for k in range(2)]
    procs = [
        start(node_command(k, port, *args), logs[k], cwd=cwds[k] if cwds else REPO)
        for k, args in enumerate(node_args)
    ]
    try:
        deadline = time.monotonic() + 240
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for proc in procs:
            stop(proc)
    outputs = [log.read_text() for log in logs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-4000:]
    return outputs


def node_dirs(base: Path, name: str) -> list[str]:
    return ["--model-dir", str(base / name / "model")]


def test_a_run_resumes_from_the_checkpoint_on_the_node_that_is_not_rank_0(
    tmp_path, dataset, epoch_one_checkpoint
):
    """Node rank 0 (host a) has no checkpoint; node rank 1 (host b) has epoch 1's. The run trains epoch 2
    only, and its metrics carry on from epoch 1's record."""
    held = tmp_path / "b" / "model" / "checkpoints" / "checkpoint.pt"
    held.parent.mkdir(parents=True)
    shutil.copy2(epoch_one_checkpoint, held)
    common = ["--data-dir", str(dataset), *TRAIN_ARGS, *EPOCHS]
    rank0, _ = run_two_nodes(
        tmp_path, [[*common, *node_dirs(tmp_path, "a")], [*common, *node_dirs(tmp_path, "b")]]
    )

    assert f"resuming from {socket.gethostname()}:{held} (rank 1): 1 epochs + 0 steps done" in rank0
    assert "resumed at epoch 2 step 0 of 10" in rank0
    assert [line.split(" epoch=")[1].split()[0] for line in rank0.splitlines() if " epoch=" in line] == [
        "2/2"
    ]
    metrics = json.loads((tmp_path / "a" / "model" / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["epochs"]] == [1, 2]
    assert metrics["epochs"][0] == load_checkpoint(epoch_one_checkpoint)["history"][0]  # not trained again
    assert metrics["complete"] is True and metrics["world_size"] == 2
    # Rank 0 saves where it runs: the next restart finds epoch 2 there, newer than host b's epoch 1.
    assert load_checkpoint(tmp_path / "a" / "model" / "checkpoints" / "checkpoint.pt")["epoch"] == 2


def test_an_explicit_resume_file_needs_to_be_on_one_node_only(tmp_path, dataset, epoch_one_checkpoint):
    """``--resume ckpt/checkpoint.pt``, the same command on both nodes, relative to each node's working
    dir: only node rank 1 has the file. Node rank 0 used to stop at once ("--resume must be ... an
    existing checkpoint file")."""
    cwds = [tmp_path / "a", tmp_path / "b"]
    for cwd in cwds:
        cwd.mkdir()
    (cwds[1] / "ckpt").mkdir()
    shutil.copy2(epoch_one_checkpoint, cwds[1] / "ckpt" / "checkpoint.pt")
    common = ["--data-dir", str(dataset), *TRAIN_ARGS, *EPOCHS, "--resume", "ckpt/checkpoint.pt"]
    rank0, _ = run_two_nodes(
        tmp_path, [[*common, *node_dirs(tmp_path, "a")], [*common, *node_dirs(tmp_path, "b")]], cwds
    )
    assert "resumed at epoch 2 step 0 of 10" in rank0
    metrics = json.loads((tmp_path / "a" / "model" / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["epochs"]] == [1, 2]
