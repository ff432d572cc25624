"""PNG figures for docs/benchmarks.md; every figure names the machine, torch, threads and sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

from .inference_speed import FP32_CPU_VARIANTS, best_variant

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _footer(fig: Any, machine: dict[str, Any], sizes: str) -> None:
    text = (
        f"{machine['cpu_model']}, {machine['usable_cpus']} CPUs, torch {machine['torch']}, "
        f"{machine['torch_threads']} threads, load {machine['load_average'][0]}; {sizes}; "
        f"{machine['date_utc']}. Bars: median; whiskers: min-max over repeats."
    )
    fig.text(0.01, 0.01, text, fontsize=7, color="#444444", wrap=True)


def _errors(stats: list[dict[str, float]]) -> list[list[float]]:
    return [[s["median"] - s["min"] for s in stats], [s["max"] - s["median"] for s in stats]]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def inference(result: dict[str, Any], machine: dict[str, Any], out: Path) -> list[Path]:
    models = list(result["models"])
    variants = list(next(iter(result["models"].values()))["variants"])
    width = 0.8 / len(variants)
    sizes = (
        f"224 px, {result['latency_iters']} batch-1 runs, {result['throughput_repeats']} throughput repeats"
    )
    paths = []

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, variant in enumerate(variants):
        lat = [result["models"][m]["variants"][variant]["latency_ms"] for m in models]
        xs = [j + i * width for j in range(len(models))]
        p50 = [entry["p50"] for entry in lat]
        ax.bar(xs, p50, width, label=variant)
        ax.errorbar(
            xs, p50, yerr=[[0] * len(lat), [e["p99"] - e["p50"] for e in lat]], fmt="none", ecolor="k"
        )
    ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(models))], models)
    ax.set_ylabel("batch-1 latency, ms (bar p50, whisker p99)")
    ax.set_title("Model forward latency on CPU, batch 1")
    ax.legend()
    _footer(fig, machine, sizes)
    paths.append(_save(fig, out / "bench-inference-latency.png"))

    fig, ax = plt.subplots(figsize=(9, 4.5))
    batches = [str(b) for b in result["batches"]]
    for i, batch in enumerate(batches):
        stats = []
        for m in models:
            variants_ = {k: v for k, v in result["models"][m]["variants"].items() if k in FP32_CPU_VARIANTS}
            best = max(variants_, key=lambda v, b=batch: variants_[v]["throughput"][b]["median"])
            stats.append(variants_[best]["throughput"][batch])
        xs = [j + i * 0.35 for j in range(len(models))]
        ax.bar(xs, [s["median"] for s in stats], 0.35, yerr=_errors(stats), capsize=3, label=f"batch {batch}")
    ax.set_xticks([j + 0.35 * (len(batches) - 1) / 2 for j in range(len(models))], models)
    ax.set_ylabel("images/s (best fp32 variant)")
    ax.set_title("Model forward throughput on CPU")
    ax.legend()
    _footer(fig, machine, sizes)
    paths.append(_save(fig, out / "bench-inference-throughput.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in models:
        variants_ = result["models"][m]["variants"]
        best = best_variant(result["models"][m])
        x = variants_[best]["latency_ms"]["p50"]
        y = result["models"][m]["published"]["imagenet_top1"]
        ax.scatter([x], [y])
        ax.annotate(m, (x, y), textcoords="offset points", xytext=(5, 3), fontsize=8)
    ax.set_xlabel("batch-1 p50 latency on this host, ms (measured)")
    ax.set_ylabel("ImageNet-1K top-1, % (torchvision metadata)")
    ax.set_title("Accuracy vs latency")
    _footer(fig, machine, sizes)
    paths.append(_save(fig, out / "bench-accuracy-latency.png"))
    return paths


def preprocess(result: dict[str, Any], machine: dict[str, Any], out: Path) -> list[Path]:
    labels = ["full decode + preset", "draft decode + preset"]
    images = list(result["images"])
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, label in enumerate(labels):
        stats = [result["images"][name]["ms"][label] for name in images]
        xs = [j + i * 0.38 for j in range(len(images))]
        ax.bar(xs, [s["median"] for s in stats], 0.38, yerr=_errors(stats), capsize=3, label=label)
    ax.set_xticks(
        [j + 0.19 for j in range(len(images))],
        [f"{name}\n{result['images'][name]['pixels']}" for name in images],
    )
    ax.set_ylabel("JPEG bytes -> model tensor, ms")
    ax.set_title("Preprocessing: full decode vs JPEG draft decode")
    ax.legend()
    _footer(fig, machine, f"{result['repeats']} repeats, preset resize {result['resize_size']} crop 224")
    return [_save(fig, out / "bench-preprocess.png")]


def serving(result: dict[str, Any], machine: dict[str, Any], out: Path) -> list[Path]:
    images = list(result["images"])
    paths_ = list(next(iter(result["images"].values()))["ms"])
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(images)
    for i, name in enumerate(images):
        stats = [result["images"][name]["ms"][p] for p in paths_]
        xs = [j + i * width for j in range(len(paths_))]
        ax.bar(xs, [s["median"] for s in stats], width, yerr=_errors(stats), capsize=3, label=name)
    ax.set_xticks([j + width * (len(images) - 1) / 2 for j in range(len(paths_))], paths_)
    ax.set_ylabel("ms per prediction")
    ax.set_title(
        f"Serving path, {result['arch']}, batch 1 (target: lambda <= {result['target_ratio']}x bare)"
    )
    ax.legend()
    _footer(fig, machine, f"{result['repeats']} interleaved repeats")
    return [_save(fig, out / "bench-serving-path.png")]


def training(result: dict[str, Any], machine: dict[str, Any], out: Path) -> list[Path]:
    runs = result["runs"]
    labels = list(next(iter(runs.values()))["images_per_sec_per_process"])
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(runs)
    for i, (processes, run) in enumerate(runs.items()):
        stats = [run["images_per_sec_per_process"][label] for label in labels]
        xs = [j + i * width for j in range(len(labels))]
        ax.bar(
            xs, [s["median"] for s in stats], width, yerr=_errors(stats), capsize=3, label=f"{processes} proc"
        )
    ax.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(len(labels))], labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("images/s per process (log)")
    ax.set_title("Training on CPU under torchrun (DDP, gloo)")
    ax.legend()
    o = result["options"]
    _footer(
        fig, machine, f"{o['arch']} {o['image_size']} px, batch {o['batch_size']}, {o['repeats']} repeats"
    )
    return [_save(fig, out / "bench-training.png")]


def cost_plot(comparison: dict[str, Any], machine: dict[str, Any], out: Path) -> list[Path]:
    rates = comparison["rates"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for option in comparison["options"]:
        ax.plot(
            rates,
            [option["monthly"][str(r)]["usd_per_month"] for r in rates],
            marker="o",
            label=option["option"],
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("requests/s (steady)")
    ax.set_ylabel("USD per month")
    ax.set_title(f"Monthly cost, {comparison['region']}, list prices {comparison['price_date'][:7]}")
    ax.legend(fontsize=7)
    _footer(fig, machine, f"min instances {comparison['min_instances']}, target = max RPS x 0.5 x 60")
    return [_save(fig, out / "bench-cost.png")]
