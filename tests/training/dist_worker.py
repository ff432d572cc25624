"""Programs the tests start under torchrun (``python -m torch.distributed.run ... dist_worker.py MODE``).

``train-per-rank-dirs BASE ARGS...``: runs ``training.train`` with model/output/checkpoint dirs that
differ per rank (``BASE/rank<N>/...``), so a test can see which ranks wrote files.

``aux-archs OUT``: two DDP training steps (the real model builder, wrapper and loop) of GoogLeNet and
Inception v3, the torchvision classifiers with auxiliary heads; rank 0 writes each model's exported
``state_dict`` to ``OUT/<arch>.pt`` and the steps done to ``OUT/<arch>.json``.

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
from types import SimpleNamespace

import torch
from torch.utils.data import DataLoader, TensorDataset

from training import distributed
from training.artifact import export_state_dict
from training.config import dist_env, parse_config
from training.data import ResumableSampler, ShardSampler
from training.loop import TrainState, build_optimizer, build_scheduler, evaluate, train_one_epoch, wrap
from training.metrics import Accumulator
from training.model import create_model
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


def run_aux_archs(out: str) -> None:
    ctx = distributed.setup(dist_env(os.environ), threads=1)
    for split in ("train", "valid"):
        Path(out, "data", split, "001.a").mkdir(parents=True, exist_ok=True)
    for arch, size in (("googlenet", 64), ("inception_v3", 80)):
        cfg = parse_config(["--data-dir", str(Path(out, "data")), "--model-dir", out, "--arch", arch,
                            "--weights", "none", "--image-size", str(size), "--batch-size", "2"])  # fmt: skip
        torch.manual_seed(0)  # the same initial weights on both ranks, as train.py has
        model = create_model(arch, 3, cfg.weights)
        optimizer = build_optimizer(model, cfg)
        torch.manual_seed(ctx.rank)  # each rank its own batches
        data = TensorDataset(torch.randn(4, 3, size, size), torch.randint(0, 3, (4,)))
        loader = DataLoader(data, batch_size=cfg.batch_size)
        wrapped = wrap(model, cfg, ctx)
        wrapped.train()
        state = TrainState(
            model=model, wrapped=wrapped, criterion=torch.nn.CrossEntropyLoss(), optimizer=optimizer,
            scheduler=build_scheduler(optimizer, cfg, len(loader)), scaler=None, amp_dtype=None,
        )  # fmt: skip
        steps, _ = train_one_epoch(state, loader, Accumulator(), ctx, cfg, SimpleNamespace(requested=False))
        if ctx.is_main:
            torch.save(export_state_dict(model), Path(out, f"{arch}.pt"))
            Path(out, f"{arch}.json").write_text(json.dumps({"steps": steps}))
    distributed.cleanup()


def run_train_per_rank_dirs(base: str, args: list[str]) -> None:
    rank_dir = Path(base) / f"rank{os.environ['RANK']}"
    cli([*args, "--model-dir", str(rank_dir / "model"), "--output-dir", str(rank_dir / "output"),
         "--checkpoint-dir", str(rank_dir / "checkpoints")])  # fmt: skip


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "collectives":
        run_collectives(sys.argv[2], int(sys.argv[3]))
    elif mode == "aux-archs":
        run_aux_archs(sys.argv[2])
    elif mode == "train-per-rank-dirs":
        run_train_per_rank_dirs(sys.argv[2], sys.argv[3:])
    else:
        raise SystemExit(f"unknown mode {mode}")
