"""## Inference: the model forward on CPU, every backbone and layout; the compile verdict."""

from __future__ import annotations

from typing import Any

from .. import decisions
from .text import NOT_MEASURED_GPU, f1, failed, mmm, table

TITLE = "## Inference: model forward on CPU"
# Why a compiled model is judged against a bar at all (bench.decisions.COMPILE_MIN_GAIN has the rule).
COMPILE_COSTS = (
    "`torch.compile` repeats its compile at every worker start and needs a C++ compiler in the container, "
    "and an AOTInductor package is built for one CPU ISA or GPU architecture, so it would have to be "
    "compiled on the serving instance type"
)


def inference_section(result: dict[str, Any]) -> str:
    if text := failed(result):
        return f"{TITLE}\n\n{text}"
    batches = [str(b) for b in result["batches"]]
    rows = []
    for arch, model in result["models"].items():
        pub = model["published"]
        for variant, entry in model["variants"].items():
            lat = entry["latency_ms"]
            rows.append(
                [
                    arch,
                    variant,
                    f1(lat["p50"]),
                    f1(lat["p99"]),
                    f"{f1(lat['min'])}-{f1(lat['max'])}",
                    *[mmm(entry["throughput"][b]) for b in batches],
                    f"{entry['speedup_vs_eager_b1']:.2f}x",
                    f"{pub['imagenet_top1']:.1f}",
                    f"{pub['gflops']}",
                ]
            )
    return "\n\n".join(
        [
            TITLE,
            f"{len(result['models'])} torchvision backbones, {result['num_classes']}-way head, random "
            "weights "
            f"(speed does not depend on weight values), {result['image_size']} px input, "
            f"{result['threads']} intra-op threads, `torch.inference_mode()`. Batch-1 latency over "
            f"{result['latency_iters']} interleaved calls (so p99 is interpolated between the two slowest "
            "calls: a tail indicator, not a service-level figure; the serving-path and load tests measure "
            f"tails under traffic); throughput over {result['throughput_repeats']} "
            "repeats. Accuracy: torchvision's published ImageNet-1K top-1 of each backbone's DEFAULT weights "
            '(`get_model_weights(arch).DEFAULT.meta["_metrics"]`), not measured here.',
            table(
                [
                    "model",
                    "variant",
                    "b1 p50 ms",
                    "b1 p99 ms",
                    "b1 min-max ms",
                    *[f"b{b} img/s" for b in batches],
                    "b1 speed-up vs eager",
                    "top-1 % (published)",
                    "GFLOPs",
                ],
                rows,
            ),
            compile_note(result),
            (
                "GPU rows (`cuda fp32`, `cuda fp16 channels_last`) are in the table above."
                if any(v.startswith("cuda") for m in result["models"].values() for v in m["variants"])
                else f"GPU fp32 / fp16: {NOT_MEASURED_GPU}. On a GPU host, "
                "`python -m bench --only inference` "
                "adds `cuda fp32` and `cuda fp16 channels_last` rows to this table; the cost model uses "
                "NVIDIA's published T4 numbers instead (see Cost)."
            ),
            "![latency](img/bench-inference-latency.png)\n![throughput](img/bench-inference-throughput.png)\n"
            "![accuracy vs latency](img/bench-accuracy-latency.png)",
        ]
    )


def compile_note(result: dict[str, Any]) -> str:
    """``torch.compile`` / ``torch.export``: the compile times and verdicts of a ``--compile`` run, or why
    this run has none."""
    bar = f"{decisions.COMPILE_MIN_GAIN:g}x over eager at batch 1 (`bench.decisions.COMPILE_MIN_GAIN`)"
    if not result["compile"]:
        return (
            "`torch.compile` and `torch.export` are **not in the default run**: inductor's compile of "
            "every backbone is slow on a small host. Run `python -m bench --compile --only inference "
            "[--archs resnet50]` to include them; this run has no compiled rows, so it judges neither. "
            f"Either would be worth serving only for a gain of at least {bar}: {COMPILE_COSTS}."
        )
    times = ", ".join(
        f"{a} {m['compile_seconds'].get('compile', 0):.0f} s (compile, three shapes) / "
        f"{m['compile_seconds'].get('export', 0):.0f} s (export)"
        for a, m in result["models"].items()
    )
    judged = []
    for arch, model in result["models"].items():
        advice = decisions.compile_advice(model)
        for name, gain in advice.gains.items():
            judged.append(f"{arch} `{name}` {gain:.2f}x" + (" (worth serving)" if advice.apply[name] else ""))
    return (
        "`torch.compile` (inductor) and `export` (`torch.export` with a dynamic batch, AOTInductor "
        f"package) are measured: see the `compile` and `export` rows; compile time per model: {times}. "
        f"Batch-1 p50 against eager: {', '.join(judged) or 'no compiled row succeeded'}; worth serving only "
        f"at {bar}: {COMPILE_COSTS}."
    )
