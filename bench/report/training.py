"""## Training throughput (torchrun, DDP) and ## Training input pipeline per loader worker."""

from __future__ import annotations

from typing import Any

from .. import decisions
from ..loader_speed import TARGET_RATE
from ..training_speed import GPU_COMMAND
from .text import NOT_MEASURED_GPU, count, failed, mmm, table

TRAINING_TITLE = "## Training throughput on CPU (torchrun, DDP)"
LOADER_TITLE = "## Training input pipeline per loader worker (CPU core)"


def training_section(result: dict[str, Any]) -> str:
    if text := failed(result):
        return f"{TRAINING_TITLE}\n\n{text}"
    o = result["options"]
    rows = []
    for processes, run in result["runs"].items():
        for label, stats in run["images_per_sec_per_process"].items():
            rows.append([processes, str(run["threads_per_process"]), label, mmm(stats)])
    notes = []
    for judged in decisions.training_loader_keeps_up(result):
        rates = result["runs"][judged.processes]["images_per_sec_per_process"]
        base = rates["step fp32"]["median"]
        notes.append(
            f"- {judged.processes} process(es): the loader alone delivers {judged.headroom:.1f}x what "
            "the fastest "
            "step consumes "
            f"({'keeps up' if judged.keeps_up else 'the input pipeline is the bottleneck'}); "
            f"channels_last {rates['step fp32 channels_last']['median'] / base:.2f}x and bf16 autocast + "
            f"channels_last {rates['step bf16 autocast channels_last']['median'] / base:.2f}x fp32 NCHW."
        )
    if "1" in result["runs"] and "2" in result["runs"]:
        one = result["runs"]["1"]["images_per_sec_per_process"]["step fp32 channels_last"]["median"]
        two = result["runs"]["2"]["images_per_sec_per_process"]["step fp32 channels_last"]["median"]
        notes.append(
            f"- 2 processes: {two:.1f} img/s per process, {2 * two:.1f} in total vs {one:.1f} with one "
            "process "
            f"({2 * two / one:.2f}x): each DDP process gets half the cores "
            "(`training.distributed.cpu_threads`)."
        )
    return "\n\n".join(
        [
            TRAINING_TITLE,
            f"`bench.training_worker` under `torchrun --standalone`, built from the training package "
            "(`parse_config`, `load_data`, `create_model`, `build_optimizer`, `wrap` for DDP) on a "
            "synthetic "
            f"ImageFolder: {o['arch']}, {o['image_size']} px crops, batch {o['batch_size']} per process, "
            f"{o['workers']} loader worker(s) per process, {o['steps']} steps per repeat, {o['repeats']} "
            "interleaved repeats. Tiny sizes: CPU numbers show relative effects only.",
            table(["processes", "threads each", "measure", "images/s per process"], rows),
            "\n".join(notes),
            # The reference rate and its source: bench.loader_speed.TARGET_RATE / TARGET_SOURCE.
            f"GPU: {NOT_MEASURED_GPU}. On a GPU host (issue's reference: NVIDIA, ResNet-50 AMP, about "
            f"{TARGET_RATE:,} img/s "
            f"on one A100 80GB): `{GPU_COMMAND}` (with `--amp` effects compared the same way).",
            "![training](img/bench-training.png)",
        ]
    )


def fraction(share: float) -> str:
    """A share in words where it is a simple one (uint8 vs float32 samples are exactly a quarter)."""
    words = {0.25: "a quarter", 0.5: "half"}
    return next((word for value, word in words.items() if abs(share - value) < 1e-9), f"{share:.0%}")


def loader_section(result: dict[str, Any]) -> str:
    if text := failed(result):
        return f"{LOADER_TITLE}\n\n{text}"
    sets, target, cores = result["sets"], result["target"], result["cores_needed"]
    rate = f"{target['images_per_sec']:,.0f} img/s"
    rows = []
    for name, entry in result["per_worker"].items():
        rates = entry["images_per_sec"]
        rows.append(
            [
                f"{name} ({sets[name]['pixels']}, ~{sets[name]['mean_kb']:.0f} KB)",
                *(mmm(rates[path], fmt=count) for path in ("decode", "float path", "uint8 path")),
                f"{entry['speedup_uint8_vs_float']['median']:.2f}x",
                f"{cores[name + '/float path']} / {cores[name + '/uint8 path']}",
            ]
        )
    run = result["loader_vs_step"]
    steps = [
        [name, mmm(rates["data loader alone"]), mmm(rates["full step"])]
        for name, rates in run["images_per_sec"].items()
    ]
    sample = result["bytes_per_sample"]
    difference = result["eval_difference_prepared"]
    setup = (
        f"`bench.loader_speed`: {sets['original']['images']} generated dogImages-like photos, and the same "
        f"after `python -m training.prepare --short-side {result['short_side']}` (JPEG quality "
        f"{result['quality']}, {result['subsampling']}: {result['size_ratio_prepared']:.0%} of the bytes). "
        "One process with one torch "
        f"thread (a DataLoader worker's), {result['image_size']} px `RandomResizedCrop` (scale from "
        f"{result['min_crop_scale']}) + flip, {result['repeats']} interleaved passes. Float path: the preset "
        "training had before (crop on the PIL image, `ToTensor`, `Normalize` in the worker); uint8 path: "
        f"`training.data` now (crop on the uint8 tensor, normalized on the device). Measured "
        f"{result['date_utc']}, load average "
        f"{' -> '.join(str(v) for v in result['load_average'])} on {result['usable_cpus']} CPUs: shared "
        "cores make every rate lower and every core count higher than on a dedicated host."
    )
    header = ["images", "decode img/s", "float path img/s", "uint8 path img/s", "uint8 vs float"]
    transfer = (
        f"A worker hands over {sample['float path'] / 1e3:.0f} KB per sample on the float path, "
        f"{sample['uint8 path'] / 1e3:.0f} KB on the uint8 path: "
        f"{fraction(sample['uint8 path'] / sample['float path'])} through shared memory, the "
        f"pinned buffer and the host-to-device copy. Target: {target['source']}. A p4d.24xlarge has "
        f"{target['vcpus_per_gpu_p4d']} vCPUs per A100, before the training processes take theirs."
    )
    step_setup = (
        f"Loader alone vs a full training step on this CPU ({run['arch']}, batch {run['batch_size']}, "
        f"{run['loader_workers']} loader worker(s), {run['threads']} threads; `load_data`, `to_model_input`; "
        "the four measures interleaved):"
    )
    bottleneck = decisions.input_pipeline_bottleneck(result)
    where = (
        "On a CPU the step is the bottleneck"
        if bottleneck.cpu_step_bound
        else "On this CPU the loader is the bottleneck for at least one image set"
    ) + (
        "; on a GPU the loader is, which the cores column sizes. "
        if bottleneck.gpu_loader_bound
        else f"; on a GPU one loader worker already keeps up with the {rate} the step needs. "
    )
    verdict = (
        where + "Validation on the prepared copy vs the endpoint's preset on the originals: mean "
        f"|difference| {difference['mean_abs']:.2f}/255, max {difference['max_abs']:.0f}/255 (one JPEG "
        "re-encode)."
    )
    return "\n\n".join(
        [
            LOADER_TITLE,
            setup,
            table([*header, f"cores for {rate} (float / uint8)"], rows),
            transfer,
            step_setup,
            table(["images", "loader alone img/s", "full step img/s"], steps),
            verdict,
        ]
    )
