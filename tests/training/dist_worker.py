"""Programs the tests start under torchrun (``python -m torch.distributed.run ... dist_worker.py MODE``).

``train-per-rank-dirs BASE ARGS...``: runs ``training.train`` with model/output/checkpoint dirs that
differ per rank (``BASE/rank<N>/...``), so a test can see which ranks wrote files.

``collectives OUT N``: in one process group (one torchrun start for both checks), evaluates an "oracle"
model on a dataset whose right and wrong predictions are known, with uneven shards and short last
batches, and records the training sample indices this rank sees in epochs 0 and 1 of N samples; writes
both to ``OUT/rank<N>.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from training import distributed
from training.config import dist_env
from training.data import ResumableSampler, ShardSampler
from training.loop import evaluate
from training.train import cli

# 11 samples, 3 classes. Inputs are the logits the oracle outputs; targets the labels. Correct top-1:
# samples 0, 1, 2, 5, 8 (5 of 11). Sharded over 2 ranks with batches of 4, the per-rank batches hold
# (2/4, 1/2 | 2/4, 0/1) correct: a mean of batch accuracies (0.375) or a floor division by the number
# of batches gives a different number than the true 5/11.
ORACLE_PREDICTIONS = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1]
ORACLE_TARGETS = [0, 1, 2, 1, 2, 2, 1, 2, 2, 2, 2]


def oracle_dataset() -> TensorDataset:
    logits = torch.full((len(ORACLE_PREDICTIONS), 3, 1, 1), -5.0)
    for i, p in enumerate(ORACLE_PREDICTIONS):
        logits[i, p] = 5.0
        logits[i, (p + 1) % 3] = 1.0  # second guess, so top-2 differs from top-1
    return TensorDataset(logits, torch.tensor(ORACLE_TARGETS))


def run_collectives(out: str, length: int) -> None:
    ctx = distributed.setup(dist_env(os.environ), threads=1)
    data = oracle_dataset()
    loader = DataLoader(data, batch_size=4, sampler=ShardSampler(len(data), ctx.rank, ctx.world_size))
    metrics = evaluate(torch.nn.Flatten(), loader, ctx)
    sampler = ResumableSampler(length, ctx, seed=3)
    epochs = {}
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        epochs[epoch] = list(sampler)
    result = {
        "rank": ctx.rank,
        "evaluate": {"local_samples": len(loader.sampler), **metrics},
        "epochs": epochs,
    }
    Path(out, f"rank{ctx.rank}.json").write_text(json.dumps(result))
    distributed.cleanup()


def run_train_per_rank_dirs(base: str, args: list[str]) -> None:
    rank_dir = Path(base) / f"rank{os.environ['RANK']}"
    cli([*args, "--model-dir", str(rank_dir / "model"), "--output-dir", str(rank_dir / "output"),
         "--checkpoint-dir", str(rank_dir / "checkpoints")])  # fmt: skip


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "collectives":
        run_collectives(sys.argv[2], int(sys.argv[3]))
    elif mode == "train-per-rank-dirs":
        run_train_per_rank_dirs(sys.argv[2], sys.argv[3:])
    else:
        raise SystemExit(f"unknown mode {mode}")
