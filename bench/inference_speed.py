"""Model forward speed on CPU: latency p50/p99 at batch 1 and throughput at batch 8 and 32.

Candidates are torchvision classifiers with a 133-way head (dogImages' breeds) and random weights:
a forward pass costs the same whatever the weight values, and no pretrained weights can be
downloaded here. The accuracy side of the trade-off comes from torchvision's published weight
metadata (ImageNet-1K top-1, ``get_model_weights(arch).DEFAULT.meta["_metrics"]``).

Variants of one model run interleaved (see :mod:`bench.timing`): ``eager`` (fp32, NCHW),
``channels_last`` (fp32, NHWC, what oneDNN's convolutions prefer), ``bf16 channels_last``
(informational: the endpoint serves fp32 on CPU) and, with ``--compile``, ``compile``
(``torch.compile``, inductor, on the channels_last model) and ``export`` (``torch.export`` with a
dynamic batch dimension, compiled ahead of time by AOTInductor into a ``.pt2`` package and loaded back:
the deployable form of a compiled model, with no compilation at start-up). Where CUDA is available,
``cuda fp32`` and ``cuda fp16 channels_last`` (what ``model_fn`` does on a GPU) are added; on a
CPU-only host the report says that GPU rows were not measured.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from torchvision import models

from inference.architecture import build_model

from .timing import Stats, interleaved, percentile

CANDIDATES = ("resnet50", "resnet18", "efficientnet_b0", "mobilenet_v3_large", "convnext_tiny")
NUM_CLASSES = 133  # dogImages' breeds: the head size the endpoint serves
IMAGE_SIZE = 224
BF16 = "bf16 channels_last"
EXPORT = "export"
FP32_CPU_VARIANTS = ("eager", "channels_last", "compile", EXPORT)
MAX_EXPORTED_BATCH = 64


def published_accuracy(arch: str) -> dict[str, Any]:
    """ImageNet-1K accuracy, GFLOPs and size of torchvision's DEFAULT weights (metadata in the package)."""
    weights = models.get_model_weights(arch).DEFAULT
    meta = weights.meta
    metrics = meta["_metrics"]["ImageNet-1K"]
    return {
        "weights": str(weights).split(".", 1)[1] if "." in str(weights) else str(weights),
        "imagenet_top1": metrics["acc@1"],
        "imagenet_top5": metrics["acc@5"],
        "gflops": meta.get("_ops"),
        "params_m": round(meta["num_params"] / 1e6, 2),
        "file_mb": meta.get("_file_size"),
        "source": f"torchvision {models.__name__.split('.')[0]} weights metadata: {weights}",
    }


def _variants(arch: str, with_compile: bool) -> tuple[dict[str, torch.nn.Module], dict[str, float]]:
    torch.manual_seed(0)
    eager = build_model(arch, NUM_CLASSES).eval()
    nets: dict[str, torch.nn.Module] = {"eager": eager}
    nets["channels_last"] = copy.deepcopy(eager).to(memory_format=torch.channels_last)
    # The CPU analogue of fp16 on a GPU: bf16 weights/activations (oneDNN uses AVX512-BF16 or AMX where
    # the CPU has them). Informational: the endpoint serves fp32 on CPU, so decisions ignore this row.
    nets[BF16] = copy.deepcopy(eager).to(dtype=torch.bfloat16, memory_format=torch.channels_last)
    compile_seconds: dict[str, float] = {}
    if with_compile:
        compiled = torch.compile(copy.deepcopy(nets["channels_last"]))
        started = time.perf_counter()
        with torch.inference_mode():
            for batch in (1, 8, 32):  # one compilation per input shape (dynamic=False)
                compiled(_input(batch, "compile"))
        compile_seconds["compile"] = time.perf_counter() - started
        nets["compile"] = compiled
        started = time.perf_counter()
        nets[EXPORT] = aot_compiled(nets["channels_last"])
        compile_seconds[EXPORT] = time.perf_counter() - started
    if torch.cuda.is_available():  # what the endpoint does on a GPU instance: fp16, channels_last
        nets["cuda fp32"] = copy.deepcopy(eager).cuda()
        nets["cuda fp16 channels_last"] = (
            copy.deepcopy(eager).cuda().half().to(memory_format=torch.channels_last)
        )
    return nets, compile_seconds


def aot_compiled(network: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``network`` exported with a dynamic batch dimension, AOTInductor-compiled, and loaded back.

    One compilation serves every batch size up to :data:`MAX_EXPORTED_BATCH`. The example input has
    batch 2: export specialises a size-1 dimension to a constant.
    """
    example = _input(2, "channels_last")
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORTED_BATCH)
    with torch.inference_mode():
        program = torch.export.export(network, (example,), dynamic_shapes=({0: batch},))
    workdir = tempfile.mkdtemp(prefix="bench-aoti-")
    try:
        package = torch._inductor.aoti_compile_and_package(program, package_path=f"{workdir}/model.pt2")
        return torch._inductor.aoti_load_package(package)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _input(batch: int, variant: str) -> torch.Tensor:
    x = torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(batch))
    if variant.startswith("cuda"):
        x = x.cuda().half() if "fp16" in variant else x.cuda()
    if variant == BF16:
        x = x.to(torch.bfloat16)
    return x if variant in ("eager", "cuda fp32") else x.contiguous(memory_format=torch.channels_last)


def _calls(nets: dict[str, torch.nn.Module], batch: int) -> dict[str, Callable[[], object]]:
    calls: dict[str, Callable[[], object]] = {}
    for name, net in nets.items():
        x = _input(batch, name)
        if name.startswith("cuda"):  # kernels run asynchronously: wait for them inside the timing
            calls[name] = lambda net=net, x=x: (net(x), torch.cuda.synchronize())
        else:
            calls[name] = lambda net=net, x=x: net(x)
    return calls


def measure_model(
    arch: str, latency_iters: int, throughput_repeats: int, batches: tuple[int, ...], with_compile: bool
) -> dict[str, Any]:
    """One model: every variant's batch-1 latency distribution and per-repeat throughput."""
    nets, compile_seconds = _variants(arch, with_compile)
    result: dict[str, Any] = {"arch": arch, "variants": {}, "compile_seconds": compile_seconds}
    with torch.inference_mode():
        latency = interleaved(_calls(nets, 1), repeats=latency_iters, warmup=3)
        throughput = {
            batch: interleaved(_calls(nets, batch), repeats=throughput_repeats, warmup=1) for batch in batches
        }
    for name, samples in latency.items():
        ms = [s * 1000 for s in samples]
        entry: dict[str, Any] = {
            "latency_ms": {
                "p50": percentile(ms, 50),
                "p99": percentile(ms, 99),
                "min": min(ms),
                "max": max(ms),
                "n": len(ms),
            },
            "throughput": {},
        }
        for batch, per_batch in throughput.items():
            entry["throughput"][str(batch)] = Stats.of([batch / s for s in per_batch[name]]).as_dict()
        result["variants"][name] = entry
    eager_p50 = result["variants"]["eager"]["latency_ms"]["p50"]
    for entry in result["variants"].values():
        entry["speedup_vs_eager_b1"] = eager_p50 / entry["latency_ms"]["p50"]
    return result


def run(
    archs: tuple[str, ...] = CANDIDATES,
    latency_iters: int = 40,
    throughput_repeats: int = 3,
    batches: tuple[int, ...] = (8, 32),
    with_compile: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "num_classes": NUM_CLASSES,
        "image_size": IMAGE_SIZE,
        "latency_iters": latency_iters,
        "throughput_repeats": throughput_repeats,
        "batches": list(batches),
        "compile": with_compile,
        "threads": torch.get_num_threads(),
        "models": {},
    }
    for arch in archs:
        started = time.perf_counter()
        measured = measure_model(arch, latency_iters, throughput_repeats, batches, with_compile)
        measured["published"] = published_accuracy(arch)
        out["models"][arch] = measured
        best = min(v["latency_ms"]["p50"] for v in measured["variants"].values())
        log(f"  {arch}: best p50 {best:.1f} ms at batch 1 ({time.perf_counter() - started:.0f} s)")
    return out


def best_variant(model_result: dict[str, Any], key: str = "p50") -> str:
    """The fp32 CPU variant (what the endpoint can serve on CPU) with the lowest batch-1 latency."""
    variants = {n: v for n, v in model_result["variants"].items() if n in FP32_CPU_VARIANTS}
    return min(variants, key=lambda name: variants[name]["latency_ms"][key])
