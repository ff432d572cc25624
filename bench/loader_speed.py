"""Training's input pipeline per CPU core: how many cores does it take to feed a large GPU?

On dogImages-like photos (500 x 375, ~130 KB JPEG: :func:`dog_photo_jpeg`) and on the same set after
``training.prepare --short-side 256``, in this process with one torch thread (what a DataLoader
worker gets), interleaved per repeat:

- decode alone (``training.data.load_training_image``);
- decode + augment along the float path training had before (torchvision's ImageFolder loader, v1
  ``RandomResizedCrop`` + flip on the PIL image, ``ToTensor``, ``Normalize``: float32 out of the
  worker) and along the uint8 path it has now (``load_training_image`` + ``training.data.train_transform``:
  crop and flip on the uint8 tensor; normalization happens on the device).

Then, with the training package's own ``load_data``, DataLoader and ``to_model_input``: the loader
alone against a full training step on this CPU. From the per-worker rates: the cores needed to feed
a GPU at NVIDIA's published ResNet-50 mixed-precision rate on one A100 80GB (2,470 img/s, DGX A100,
NVIDIA DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5/README.md, "Training
performance results").
"""

from __future__ import annotations

import datetime as dt
import io
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import datasets
from torchvision import transforms as v1

from inference.preprocessing import IMAGENET_MEAN, IMAGENET_STD, eval_transform, resize_size_for

from . import machine
from .images import photo_image
from .timing import Stats, interleaved, ratio_stats

DOG_IMAGES_SIZE = (500, 375)
# Sensor-like grain on top of photo_image's structure, and quality 95: together ~125-135 KB at
# 500 x 375, dogImages' typical file size for that size (photo_image alone is ~45 KB at quality 90,
# which decodes faster than the real photos do).
GRAIN = 14
QUALITY = 95
TARGET_RATE = 2470
TARGET_SOURCE = (
    "NVIDIA DeepLearningExamples, ResNet50 v1.5 for PyTorch, training performance on DGX A100 (8x A100 80GB),"
    " 1 GPU, mixed precision: 2470 img/s"
)
# A p4d.24xlarge has 96 vCPUs for 8 A100 40 GB (AWS Compute Blog, "Amazon EC2 P4d instances deep dive",
# 2020): 12 per GPU, fewer once the training processes take theirs.
VCPUS_PER_A100_P4D = 12


def dog_photo_jpeg(seed: int, size: tuple[int, int] = DOG_IMAGES_SIZE) -> bytes:
    """A photo-like JPEG that costs what a dogImages photo of ``size`` costs to decode."""
    image = np.asarray(photo_image(size, seed), dtype=np.float32)
    grain = np.random.default_rng(seed).standard_normal(image.shape, dtype=np.float32) * GRAIN
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image + grain, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=QUALITY)
    return buffer.getvalue()


def write_image_folder(root: Path, count: int, size: tuple[int, int], classes: int = 2) -> Path:
    """``count`` training images over ``classes`` classes, and one validation image per class."""
    for split, per_class in (("train", math.ceil(count / classes)), ("valid", 1)):
        for index in range(classes):
            folder = root / split / f"{index + 1:03d}.class_{index}"
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(per_class):
                seed = (1_000_000 if split == "valid" else 0) + index * per_class + n
                (folder / f"{n:05d}.jpg").write_bytes(dog_photo_jpeg(seed, size))
    return root


def float_transform(image_size: int, min_crop_scale: float) -> v1.Compose:
    """The training preset as it was: PIL crop and flip, then float32 and normalized in the worker."""
    return v1.Compose(
        [
            v1.RandomResizedCrop(image_size, scale=(min_crop_scale, 1.0), antialias=True),
            v1.RandomHorizontalFlip(),
            v1.ToTensor(),
            v1.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def _per_worker(
    sets: dict[str, list[str]], image_size: int, min_crop_scale: float, repeats: int
) -> dict[str, dict[str, dict[str, float]]]:
    from training.data import load_training_image, train_transform

    old, new = float_transform(image_size, min_crop_scale), train_transform(image_size, min_crop_scale)
    paths: dict[str, Callable[[str], object]] = {
        "decode": load_training_image,
        "float path": lambda path: old(datasets.folder.pil_loader(path)),
        "uint8 path": lambda path: new(load_training_image(path)),
    }

    def one_pass(files: list[str], sample: Callable[[str], object]) -> Callable[[], None]:
        def run() -> None:
            torch.manual_seed(0)  # the same crops for every path and repeat
            for path in files:
                sample(path)

        return run

    variants = {f"{s}/{p}": one_pass(files, fn) for s, files in sets.items() for p, fn in paths.items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seconds = interleaved(variants, repeats=repeats, warmup=1)
    finally:
        torch.set_num_threads(threads)
    out: dict[str, dict[str, Any]] = {}
    for name, files in sets.items():
        rates = {p: Stats.of([len(files) / t for t in seconds[f"{name}/{p}"]]).as_dict() for p in paths}
        out[name] = {
            "images_per_sec": rates,
            "speedup_uint8_vs_float": ratio_stats(
                seconds[f"{name}/float path"], seconds[f"{name}/uint8 path"]
            ).as_dict(),
        }
    return out


def _loader_vs_step(
    data_dirs: dict[str, Path],
    arch: str,
    image_size: int,
    batch_size: int,
    steps: int,
    repeats: int,
    workers: int,
) -> dict[str, Any]:
    """Images/s of each set's training loader alone and of a full CPU training step fed by it.

    All four calls interleave in every repeat (one model for both sets: the step does not depend on
    the pictures), so a burst of load elsewhere does not land on one set only.
    """
    from training.config import parse_config
    from training.data import load_data, to_model_input
    from training.distributed import DistContext
    from training.loop import build_optimizer
    from training.model import create_model

    from .training_worker import _batches, loader_alone, prefetched

    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    feeds = {}
    with tempfile.TemporaryDirectory(prefix="bench-loader-model-") as model_dir:
        for name, data_dir in data_dirs.items():
            cfg = parse_config(
                [
                    *("--data-dir", str(data_dir), "--model-dir", model_dir, "--checkpoint-dir", "none"),
                    *("--arch", arch, "--weights", "none", "--image-size", str(image_size)),
                    *("--batch-size", str(batch_size), "--workers", str(workers)),
                ],
                environ={},
            )
            data = load_data(cfg, ctx)
            loader = data.train_loader(cfg)
            feeds[name] = (loader, _batches(loader, data.train_sampler))
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.arch, len(data.class_names), "none").to(memory_format=torch.channels_last)
    model.train()
    optimizer = build_optimizer(model, cfg)
    criterion = torch.nn.CrossEntropyLoss()

    def train_steps(batches: Any) -> tuple[int, float]:
        started = time.perf_counter()
        done = 0
        for _ in range(steps):
            images, targets = next(batches)
            loss = criterion(model(to_model_input(images, ctx.device, torch.channels_last)), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += targets.numel()
        return done, time.perf_counter() - started

    calls = {}
    for name, (loader, batches) in feeds.items():
        ahead = prefetched(loader)
        calls[(name, "data loader alone")] = lambda b=batches, a=ahead: loader_alone(b, steps, a)
        calls[(name, "full step")] = lambda b=batches: train_steps(b)
    for call in calls.values():  # warm-up: worker start, oneDNN primitives
        call()
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
    for _ in range(repeats):
        for key, call in calls.items():
            images, seconds = call()
            samples[key].append(images / seconds)
    rates: dict[str, dict[str, Any]] = {name: {} for name in feeds}
    for (name, measure), values in samples.items():
        rates[name][measure] = Stats.of(values).as_dict()
    return {
        "arch": arch,
        "batch_size": batch_size,
        "loader_workers": workers,
        "threads": torch.get_num_threads(),
        "steps_per_repeat": steps,
        "images_per_sec": rates,
    }


def _eval_difference(original: list[str], prepared: list[str], image_size: int) -> dict[str, float]:
    """How far validation on the prepared copy is from the endpoint's view of the original (in 1/255)."""
    from training.data import load_training_image

    preset = eval_transform(image_size, resize_size_for(image_size))
    std = torch.tensor(IMAGENET_STD).view(-1, 1, 1)
    diffs = [
        ((preset(load_training_image(a)) - preset(load_training_image(b))) * std * 255).abs()
        for a, b in zip(original, prepared, strict=True)
    ]
    return {
        "mean_abs": float(torch.stack([d.mean() for d in diffs]).mean()),
        "max_abs": float(max(d.max() for d in diffs)),
    }


def run(
    images: int = 32,
    size: tuple[int, int] = DOG_IMAGES_SIZE,
    short_side: int | None = None,
    image_size: int = 224,
    min_crop_scale: float = 0.08,
    repeats: int = 5,
    arch: str = "resnet18",
    batch_size: int = 8,
    steps: int = 3,
    step_repeats: int = 3,
    loader_workers: int = 1,
    target_rate: float = TARGET_RATE,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    from training.prepare import DEFAULT_QUALITY, SUBSAMPLING, prepare

    short_side = short_side or resize_size_for(image_size)
    load_before = machine.load_average()[0]
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        original = write_image_folder(Path(tmp) / "original", images, size)
        prepared = Path(tmp) / "prepared"
        prepare(original, prepared, short_side, workers=1, log=lambda _: None)
        files = {
            name: sorted(str(p) for p in (root / "train").rglob("*.jpg"))
            for name, root in (("original", original), ("prepared", prepared))
        }
        sets: dict[str, Any] = {}
        for name, paths in files.items():
            sizes = [Path(p).stat().st_size for p in paths]
            with Image.open(paths[0]) as first:
                pixels = f"{first.width}x{first.height}"
            sets[name] = {"images": len(paths), "pixels": pixels, "mean_kb": sum(sizes) / len(sizes) / 1e3}
        before, after = sets["original"], sets["prepared"]
        log(
            f"  {before['images']} images {before['pixels']} ~{before['mean_kb']:.0f} KB"
            f" -> prepared {after['pixels']} ~{after['mean_kb']:.0f} KB"
        )
        per_worker = _per_worker(files, image_size, min_crop_scale, repeats)
        for name, entry in per_worker.items():
            rates = entry["images_per_sec"]
            log(
                f"  {name}: img/s per worker: decode {rates['decode']['median']:.0f}, float path "
                f"{rates['float path']['median']:.0f}, uint8 path {rates['uint8 path']['median']:.0f}"
            )
        loader_vs_step = _loader_vs_step(
            {"original": original, "prepared": prepared},
            arch, image_size, batch_size, steps, step_repeats, loader_workers,
        )  # fmt: skip
        for name, rates in loader_vs_step["images_per_sec"].items():
            log(
                f"  {name}: loader alone {rates['data loader alone']['median']:.0f} img/s, full {arch} step "
                f"{rates['full step']['median']:.1f} img/s"
            )
        valid = {
            name: sorted(str(p) for p in (root / "valid").rglob("*.jpg"))
            for name, root in (("original", original), ("prepared", prepared))
        }
        eval_difference = _eval_difference(valid["original"], valid["prepared"], image_size)
    cores = {
        f"{name}/{path}": math.ceil(target_rate / entry["images_per_sec"][path]["median"])
        for name, entry in per_worker.items()
        for path in ("float path", "uint8 path")
    }
    return {
        "image_size": image_size,
        "min_crop_scale": min_crop_scale,
        "short_side": short_side,
        "quality": DEFAULT_QUALITY,
        "subsampling": SUBSAMPLING,
        "repeats": repeats,
        "sets": sets,
        "size_ratio_prepared": sets["prepared"]["mean_kb"] / sets["original"]["mean_kb"],
        "per_worker": per_worker,
        "bytes_per_sample": {"float path": 4 * 3 * image_size**2, "uint8 path": 3 * image_size**2},
        "loader_vs_step": loader_vs_step,
        "eval_difference_prepared": eval_difference,
        "target": {
            "images_per_sec": target_rate,
            "source": TARGET_SOURCE,
            "vcpus_per_gpu_p4d": VCPUS_PER_A100_P4D,
        },
        "cores_needed": cores,
        # 1-minute load average at the start and the end: how shared the cores were.
        "load_average": [round(load_before, 2), round(machine.load_average()[0], 2)],
        "usable_cpus": machine.usable_cpus(),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
