"""One process of the training benchmark, started by ``torchrun`` from :mod:`bench.training_speed`.

    torchrun --nproc-per-node N -m bench.training_worker --data-dir DIR [--arch A --image-size PX
        --batch-size B --steps S --repeats R --workers W]

Builds data, model and optimizer with the training package's own functions (``parse_config``,
``load_data``, ``create_model``, ``build_optimizer``, DDP via ``wrap``), then times, interleaved
per repeat: the data loader alone (the batches its workers prefetched taken first, untimed), and a
full training step (loader + forward + backward + DDP all-reduce + optimizer step) in three
flavours: fp32 NCHW, fp32 channels_last, bf16 autocast with channels_last. Rank 0 prints one line
``BENCH_RESULT {json}`` with images/s per process (the mean over ranks) for every repeat.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

VARIANTS = {
    "step fp32": {"channels_last": False, "amp": False},
    "step fp32 channels_last": {"channels_last": True, "amp": False},
    "step bf16 autocast channels_last": {"channels_last": True, "amp": True},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.training_worker")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers per process")
    return parser.parse_args(argv)


def _batches(
    loader: torch.utils.data.DataLoader, sampler: Any
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches, a new epoch (new shuffle) whenever the loader runs out."""
    for epoch in itertools.count():
        sampler.set_epoch(epoch)
        yield from loader


def prefetched(loader: torch.utils.data.DataLoader) -> int:
    """Batches the loader's workers prepare ahead of the consumer (0 when the main process loads)."""
    return loader.num_workers * (loader.prefetch_factor or 0)


def take(batches: Iterator[tuple[torch.Tensor, torch.Tensor]], count: int) -> int:
    """Images in the next ``count`` batches."""
    return sum(next(batches)[1].numel() for _ in range(count))


def loader_alone(
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]], steps: int, ahead: int
) -> tuple[int, float]:
    """Images and seconds for ``steps`` batches that the workers load while the clock runs.

    While the previous calls ran, the workers filled their prefetch queue (``ahead`` batches): timing
    those would time a queue read, not loading. They are taken first, untimed.
    """
    take(batches, ahead)
    started = time.perf_counter()
    images = take(batches, steps)
    return images, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    from training.config import parse_config
    from training.data import load_data
    from training.distributed import cleanup, setup
    from training.model import create_model
    from training.train import build_optimizer, wrap

    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as model_dir:
        base = [
            *("--data-dir", args.data_dir, "--model-dir", model_dir, "--checkpoint-dir", "none"),
            *("--arch", args.arch, "--weights", "none", "--image-size", str(args.image_size)),
            *("--batch-size", str(args.batch_size), "--workers", str(args.workers), "--epochs", "1"),
        ]
        cfg = parse_config(base)
        ctx = setup(cfg.dist, cfg.threads)
        try:
            result = _measure(args, cfg, ctx, load_data, create_model, build_optimizer, wrap)
        finally:
            cleanup()
    if ctx.is_main:
        print("BENCH_RESULT " + json.dumps(result), flush=True)


def _measure(args, cfg, ctx, load_data, create_model, build_optimizer, wrap) -> dict[str, Any]:
    from training.data import to_model_input
    from training.distributed import all_reduce_sum

    data = load_data(cfg, ctx)
    loader = data.loader(data.train, data.train_sampler, cfg)
    batches = _batches(loader, data.train_sampler)
    criterion = nn.CrossEntropyLoss()
    steps: dict[str, Any] = {}
    for name, flags in VARIANTS.items():
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.arch, len(data.class_names), "none")
        memory_format = torch.channels_last if flags["channels_last"] else torch.contiguous_format
        model.to(memory_format=memory_format).train()
        optimizer = build_optimizer(model, cfg)
        steps[name] = (wrap(model, cfg, ctx), optimizer, memory_format, flags["amp"])

    def train_steps(name: str) -> tuple[int, float]:
        model, optimizer, memory_format, amp = steps[name]
        started = time.perf_counter()
        done = 0
        for _ in range(args.steps):
            images, targets = next(batches)
            images = to_model_input(images, ctx.device, memory_format)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                loss = criterion(model(images), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += targets.numel()
        return done, time.perf_counter() - started

    ahead = prefetched(loader)
    calls = {
        "data loader alone": lambda: loader_alone(batches, args.steps, ahead),
        **{name: (lambda n=name: train_steps(n)) for name in steps},
    }
    for call in calls.values():  # warm-up: worker start, oneDNN primitives, autocast caches
        call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.repeats):
        for name, call in calls.items():
            images, seconds = call()
            rate = images / seconds
            # Mean over ranks of each process's own rate: images/s per process.
            total = all_reduce_sum(ctx, torch.tensor([rate])).item()
            samples[name].append(total / ctx.world_size)
    return {
        "world_size": ctx.world_size,
        "threads_per_process": torch.get_num_threads(),
        "arch": cfg.arch,
        "image_size": cfg.image_size,
        "batch_size": cfg.batch_size,
        "loader_workers": cfg.workers,
        "steps_per_repeat": args.steps,
        "images_per_sec_per_process": samples,
    }


if __name__ == "__main__":
    main()
