"""From measured numbers to configuration and to the document's verdicts.

Every rule is written here once, with its constants, so a reader can trace each config value in
``docs/benchmarks.json`` to a measurement and a rule, and each verdict in ``docs/benchmarks.md`` (a
target met or missed, a change to apply or not) to a comparison here: :mod:`bench.report` only prints
the fields these functions return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import cost
from .inference_speed import FP32_CPU_VARIANTS, best_variant

# The serving target ratio is judged on the production path (the handler in front of the DLC's TorchServe)
# where the run has it, else on the in-process one (bench/serving_overhead.py measures both).
PRODUCTION_PATH = "lambda_torchserve"
INPROCESS_PATH = "lambda"


def judged_path(entry: dict[str, Any]) -> str:
    """The path an image's result is judged on: the production path when measured (older results lack it)."""
    return PRODUCTION_PATH if PRODUCTION_PATH in entry.get("ratio_vs_bare", {}) else INPROCESS_PATH


# Batch-1 forward budget on this host (best fp32 layout). The prod p99 alarm is 500 ms for the
# whole API path (Lambda, network, decode, forward); 100 ms of forward leaves room for the rest
# and for p99 being a few times the typical latency under load. Compared against the *minimum*
# over the interleaved calls: the estimate of a model's own cost that other processes on the
# machine disturb least (p50 and p99 are reported next to it).
LATENCY_BUDGET_MS = 100.0
# Two backbones whose published top-1 differ by less than this are "as accurate": the faster wins.
ACCURACY_TIE_POINTS = 2.0
# Design loads the instance counts are sized for (requests/s): steady and peak.
DESIGN_LOAD = {"dev": {"steady": 1, "peak": 10}, "prod": {"steady": 10, "peak": 100}}
# Production keeps two instances so that an instance or AZ failure does not take the API down
# (SageMaker spreads instances of a variant across AZs); the stage config enforces >= 2 too.
MIN_INSTANCES = {"dev": 1, "prod": 2}
LAMBDA_UTILIZATION_TARGET = 0.7  # the stage config's lambda_provisioned_utilization_target
# The project's design fixes a GPU EndpointConfig (README, introduction: a GPU endpoint on the PyTorch
# inference container): the stages choose among the GPU types, and the cheapest CPU type is reported next
# to each as the measured alternative.
REQUIRE_ACCELERATOR = True


def choose_backbone(inference: dict[str, Any]) -> dict[str, Any]:
    """Most accurate (published ImageNet top-1) backbone whose batch-1 latency fits the budget."""
    rows = []
    for arch, result in inference["models"].items():
        variants = result["variants"]
        best = best_variant(result, key="min")
        rows.append(
            {
                "arch": arch,
                "top1": result["published"]["imagenet_top1"],
                "variant": best,
                "min_ms": variants[best]["latency_ms"]["min"],
                "p50_ms": variants[best]["latency_ms"]["p50"],
                "p99_ms": variants[best]["latency_ms"]["p99"],
            }
        )
    within = [row for row in rows if row["min_ms"] <= LATENCY_BUDGET_MS] or rows
    top = max(row["top1"] for row in within)
    tied = [row for row in within if top - row["top1"] < ACCURACY_TIE_POINTS]
    chosen = min(tied, key=lambda row: row["min_ms"])
    return {
        "arch": chosen["arch"],
        "variant": chosen["variant"],
        "rule": (
            "highest published ImageNet-1K top-1 among backbones with batch-1 latency (min over the "
            "calls) <= "
            f"{LATENCY_BUDGET_MS:g} ms "
            f"on this host; within {ACCURACY_TIE_POINTS:g} points of the best, the faster one"
        ),
        "candidates": sorted(rows, key=lambda row: -row["top1"]),
    }


def cost_inputs(results: dict[str, Any]) -> dict[str, Any]:
    """The measured numbers the cost model needs, with where each one comes from."""
    serving = results.get("serving", {})
    capacity = serving.get("capacity", {})
    best = capacity.get("best")
    cpus = results["machine"]["usable_cpus"]
    phone = serving.get("images", {}).get("phone")
    preprocess = results.get("preprocess", {}).get("images", {}).get("phone")
    if best is None or phone is None or preprocess is None:
        raise ValueError("cost inputs need the serving and preprocess benchmarks")
    return {
        "arch": serving["arch"],
        # This host's vCPUs are whole cores (bench/cost.py physical_cores).
        "cpu_rps_per_core": best["rps"] / cpus,
        "cpu_rps_host": best["rps"],
        "host_vcpus": cpus,
        "worker_layout": f"{best['workers']} worker(s) x {best['threads']} thread(s)",
        "threads_per_worker": best["threads"],
        # The production path (Lambda -> TorchServe) when the run measured it, else the in-process one.
        "request_seconds": phone["ms"][_request_path(phone)]["median"] / 1000,
        # Draft decode + preset of the phone photo; measured with the host's threads, used per vCPU.
        "cpu_decode_seconds": preprocess["ms"]["draft decode + preset"]["median"] / 1000,
        "sources": {
            "cpu_rps_per_core": "serving / capacity: best worker layout, req/s / host cores",
            "request_seconds": f"serving / phone image / {_request_path(phone)} path median",
            "cpu_decode_seconds": "preprocess / phone / draft decode + preset median",
        },
    }


def derive(results: dict[str, Any]) -> dict[str, Any]:
    decisions: dict[str, Any] = {}
    if "inference" in results and "models" in results["inference"]:
        decisions["backbone"] = choose_backbone(results["inference"])
    try:
        inputs = cost_inputs(results)
    except (KeyError, ValueError) as exc:
        decisions["cost_error"] = str(exc)
        return decisions
    decisions["cost_inputs"] = inputs
    comparisons = {
        stage: cost.compare(
            inputs["cpu_rps_per_core"],
            inputs["request_seconds"],
            inputs["cpu_decode_seconds"],
            min_instances=MIN_INSTANCES[stage],
            threads_per_worker=inputs["threads_per_worker"],
        )
        for stage in ("dev", "prod")
    }
    decisions["cost"] = comparisons["prod"]
    decisions["single_worker_rps"] = round(cost.single_worker_rps(inputs["cpu_decode_seconds"]), 1)
    stages = {}
    for stage, comparison in comparisons.items():
        load = DESIGN_LOAD[stage]
        # Options the stage can run with this project's handler (no custom batching handler).
        runnable = [o for o in comparison["options"] if o["kind"] == "instance" and o["handler"] == "default"]
        gpu = [o for o in runnable if cost.INSTANCES[_instance_type(o)].accelerator]
        cpu = [o for o in runnable if not cost.INSTANCES[_instance_type(o)].accelerator]
        chosen = _cheapest_instance(gpu if REQUIRE_ACCELERATOR else runnable, load)
        values = _stage_values(chosen, stage, load)
        values["lambda_provisioned_concurrency"] = cost.provisioned_concurrency(
            load["steady"], inputs["request_seconds"], LAMBDA_UTILIZATION_TARGET
        )
        # At least one above the steady value, like max_instances: the stage config rejects a production
        # stage whose provisioned concurrency cannot autoscale (stacks/config.py).
        values["lambda_provisioned_concurrency_max"] = max(
            values["lambda_provisioned_concurrency"] + 1,
            cost.provisioned_concurrency(load["peak"], inputs["request_seconds"], LAMBDA_UTILIZATION_TARGET),
        )
        values["cheapest_overall_at_steady_load"] = cost.cheapest(comparison, load["steady"])["option"]
        cpu_alternative = _stage_values(_cheapest_instance(cpu, load), stage, load)
        values["cpu_alternative"] = cpu_alternative
        cpu_share = cpu_alternative["usd_per_month_at_steady_load"] / values["usd_per_month_at_steady_load"]
        values["cpu_alternative_saving_percent"] = round(100 * (1 - cpu_share))
        stages[stage] = values
    decisions["stages"] = stages
    return decisions


def config_values(stage_values: dict[str, Any]) -> dict[str, Any]:
    """The cdk.json keys a stage's derived values set (tests/bench checks cdk.json against them)."""
    return {key: stage_values[key] for key in CONFIG_KEYS}


CONFIG_KEYS = (
    "instance_type",
    "min_instances",
    "max_instances",
    "target_invocations_per_instance",
    "inference_workers",
    "inference_threads_per_worker",
    "lambda_provisioned_concurrency",
    "lambda_provisioned_concurrency_max",
)


def _instance_type(option: dict[str, Any]) -> str:
    return option["option"].split(" ")[0]


def _cheapest_instance(options: list[dict[str, Any]], load: dict[str, float]) -> dict[str, Any]:
    """The cheapest per month at the stage's steady load, then at its peak."""
    return min(
        options,
        key=lambda o: (_steady_cost(o, load["steady"]), _peak_cost(o, load["peak"])),
    )


def _stage_values(option: dict[str, Any], stage: str, load: dict[str, float]) -> dict[str, Any]:
    instance_type = _instance_type(option)
    target = option["target_invocations_per_instance"]
    needed = cost.instances_needed(load["peak"], target, MIN_INSTANCES[stage])
    return {
        "instance_type": instance_type,
        # The PyTorch inference DLC comes in cpu and gpu builds; the image must match the instance.
        "inference_image_kind": "gpu" if cost.INSTANCES[instance_type].accelerator else "cpu",
        "min_instances": MIN_INSTANCES[stage],
        # At least one above the minimum, so that the scaling policy is exercised in every stage.
        "max_instances": max(MIN_INSTANCES[stage] + 1, needed),
        "target_invocations_per_instance": target,
        "max_rps_per_instance": option["max_rps_per_instance"],
        "capacity_basis": option["capacity_basis"],
        "inference_workers": option["workers"],
        "inference_threads_per_worker": option["threads_per_worker"],
        "design_load_rps": load,
        "usd_per_month_at_steady_load": round(_steady_cost(option, load["steady"]), 2),
    }


def _steady_cost(option: dict[str, Any], steady: float) -> float:
    return option["monthly"][str(steady)]["usd_per_month"]


def _peak_cost(option: dict[str, Any], peak: float) -> float:
    """Monthly cost at ``peak`` req/s for an instance option (recomputed: compare() covers 1/10/100)."""
    monthly = option["monthly"].get(str(peak))
    if monthly is not None:
        return monthly["usd_per_month"]
    count = cost.instances_needed(peak, option["target_invocations_per_instance"])
    return count * option["usd_per_hour"] * cost.HOURS_PER_MONTH


def _request_path(image_result: dict[str, Any]) -> str:
    return "lambda_torchserve" if "lambda_torchserve" in image_result["ms"] else "lambda"


# --- Verdicts the document states -------------------------------------------------------------------
# Each is one comparison of a measured number with a target or a bar. The targets of the Lambda and
# serving benchmarks live beside the code that measures them (bench.lambda_overhead COLD_TARGET_MS /
# WARM_TARGET_MS, bench.serving_overhead TARGET_RATIO, which the run saves as ``target_ratio``).

# A per-request cost under this share of the bare prediction cannot show in the end-to-end numbers,
# whose repeat-to-repeat spread is several percent: not worth a change.
NEGLIGIBLE_SHARE = 0.01
# channels_last on CPU is worth the two lines in model_fn only where it is clearly faster than the default
# layout: below 5% the run-to-run noise of the batch-1 p50 (interleaved, 2 cores) can flip the sign.
CHANNELS_LAST_MIN_GAIN = 1.05
# torch.compile recompiles at every worker start and needs a C++ compiler in the container; an AOTInductor
# package is built for one CPU ISA or GPU architecture, so it would have to be compiled on the serving
# instance type. A batch-1 gain has to be large to pay for either: this is the bar (a judgment, kept here
# so that the advice follows the measurement instead of a sentence in the report).
COMPILE_MIN_GAIN = 1.5
COMPILED_VARIANTS = ("compile", "export")  # bench.inference_speed's names for the two
# TorchServe's server-side batch (SAGEMAKER_TS_BATCH_SIZE): the toolkit's default handler runs a batch one
# request at a time (aws/sagemaker-inference-toolkit, transformer.py, Transformer.transform), so a batch
# above 1 only adds queueing delay with this project's input_fn/predict_fn/output_fn.
SERVER_BATCH_SIZE = 1
# The warm Lambda rows are judged on the module's client replaced by a canned answer: the handler's own
# work, without botocore's (bench.lambda_overhead).
WARM_JUDGED_CALL = "stub client"


class Verdict(NamedTuple):
    """``value`` against an upper bound: met when it is at most ``target``."""

    value: float
    target: float
    met: bool

    @property
    def excess(self) -> float:
        """How far over the target (negative when under it)."""
        return self.value - self.target


def at_most(value: float, target: float) -> Verdict:
    """The verdict on a cost that must not exceed ``target`` (a value exactly on it meets it)."""
    return Verdict(value, target, value <= target)


def negligible(ms: float, reference_ms: float) -> bool:
    """Whether ``ms`` is under :data:`NEGLIGIBLE_SHARE` of ``reference_ms`` (the bare prediction)."""
    return ms < NEGLIGIBLE_SHARE * reference_ms


class LambdaCpuShare(NamedTuple):
    """What Lambda's CPU share at ``memory_mb`` makes of this host's single-core times."""

    memory_mb: int
    mb_per_vcpu: int
    slowdown: float


def lambda_cpu_share(memory_mb: int) -> LambdaCpuShare:
    """Lambda gives CPU in proportion to memory (:data:`bench.cost.LAMBDA_MB_PER_VCPU` = one vCPU)."""
    if memory_mb <= 0:
        raise ValueError("memory_mb must be positive")
    # Above one vCPU's worth the handler's single-threaded work gets no faster: never a speed-up.
    return LambdaCpuShare(memory_mb, cost.LAMBDA_MB_PER_VCPU, max(1.0, cost.LAMBDA_MB_PER_VCPU / memory_mb))


@dataclass(frozen=True)
class LambdaVerdicts:
    cold: Verdict  # the min over fresh interpreters: the estimate that other processes disturb least
    warm: dict[str, dict[str, Verdict]]  # image -> endpoint call replaced by -> verdict on the median
    # The largest image up to which every image (by size) meets the warm target, None when even the
    # smallest misses it; on this host, then with the CPU share of the stage's memory.
    warm_limit: str | None
    warm_limit_scaled: str | None
    cpu_share: LambdaCpuShare | None


def lambda_verdicts(
    lam: dict[str, Any], cold_target_ms: float, warm_target_ms: float, memory_mb: int | None = None
) -> LambdaVerdicts:
    """The Lambda benchmark against its targets (``memory_mb``: the stage's, for the scaled limit)."""
    images = lam["warm"]["images"]
    warm = {
        image: {label: at_most(stats["median"], warm_target_ms) for label, stats in entry["ms"].items()}
        for image, entry in images.items()
    }
    share = lambda_cpu_share(memory_mb) if memory_mb else None
    return LambdaVerdicts(
        cold=at_most(lam["cold"]["import_handler_ms"]["min"], cold_target_ms),
        warm=warm,
        warm_limit=warm_limit(images, warm_target_ms),
        warm_limit_scaled=warm_limit(images, warm_target_ms, share.slowdown) if share else None,
        cpu_share=share,
    )


def warm_limit(images: dict[str, Any], warm_target_ms: float, slowdown: float = 1.0) -> str | None:
    """The largest image up to which every image, smallest first, meets the warm target with its
    :data:`WARM_JUDGED_CALL` median times ``slowdown``; None when the smallest misses it already. A larger
    image that happened to meet it after a smaller one missed does not count: the cost grows with size."""
    largest = None
    for image in sorted(images, key=lambda name: images[name]["bytes"]):
        if not at_most(images[image]["ms"][WARM_JUDGED_CALL]["median"] * slowdown, warm_target_ms).met:
            break
        largest = image
    return largest


@dataclass(frozen=True)
class ServingVerdict:
    image: str
    path: str
    production: bool  # judged on the path production runs (Lambda -> runtime front -> TorchServe)
    ratio: dict[str, float]  # ratio vs bare: median, min, max
    verdict: Verdict  # the median against the target ratio
    inprocess_ratio: dict[str, float] | None  # the in-process path beside it when production is judged


def serving_verdict(serving: dict[str, Any]) -> ServingVerdict:
    """The serving path's ratio to the bare forward against the run's target, for the phone photo (the
    largest, where the per-request work shows most) or else the first image measured."""
    image = "phone" if "phone" in serving["images"] else next(iter(serving["images"]))
    entry = serving["images"][image]
    path = judged_path(entry)
    ratio = entry["ratio_vs_bare"][path]
    production = path == PRODUCTION_PATH
    return ServingVerdict(
        image=image,
        path=path,
        production=production,
        ratio=ratio,
        verdict=at_most(ratio["median"], serving["target_ratio"]),
        inprocess_ratio=entry["ratio_vs_bare"][INPROCESS_PATH] if production else None,
    )


@dataclass(frozen=True)
class CpuLayoutAdvice:
    arch: str
    channels_last_gain: float  # eager p50 / channels_last p50 at batch 1
    apply_channels_last: bool  # use channels_last on CPU in model_fn too
    bf16_gain: float | None  # eager fp32 p50 / bf16 p50; informational: needs an accuracy check first


def cpu_layout_advice(inference: dict[str, Any], arch: str) -> CpuLayoutAdvice | None:
    """Whether the serving backbone should run channels_last on CPU, from its batch-1 p50s."""
    model = inference.get("models", {}).get(arch)
    if not model:
        return None
    variants = model["variants"]
    eager = variants["eager"]["latency_ms"]["p50"]
    gain = eager / variants["channels_last"]["latency_ms"]["p50"]
    bf16 = variants.get("bf16 channels_last")
    return CpuLayoutAdvice(
        arch=arch,
        channels_last_gain=gain,
        apply_channels_last=gain > CHANNELS_LAST_MIN_GAIN,
        bf16_gain=eager / bf16["latency_ms"]["p50"] if bf16 else None,
    )


@dataclass(frozen=True)
class CompileAdvice:
    gains: dict[str, float]  # compiled variant -> eager p50 / its p50 at batch 1 (only those measured)
    apply: dict[str, bool]  # the same keys: whether the gain reaches COMPILE_MIN_GAIN


def compile_advice(model_result: dict[str, Any]) -> CompileAdvice:
    """Whether ``torch.compile`` / ``torch.export`` would be worth serving, from the batch-1 p50s."""
    variants = model_result["variants"]
    eager = variants["eager"]["latency_ms"]["p50"]
    gains = {
        name: eager / variants[name]["latency_ms"]["p50"] for name in COMPILED_VARIANTS if name in variants
    }
    return CompileAdvice(gains, {name: gain >= COMPILE_MIN_GAIN for name, gain in gains.items()})


@dataclass(frozen=True)
class MultiImageDecision:
    arch: str
    batch1_variant: str
    batch1_img_s: float
    batch8_variant: str | None  # None: the run has no batch-8 throughput
    batch8_img_s: float | None
    batch_gain: float  # per-image throughput at batch 8 over batch 1 (nan without a batch-8 row)
    layout: tuple[int, int] | None  # the fastest (workers, threads) whole-request layout measured
    single_worker_threads: int | None  # the one-worker layout it is compared with
    layout_gain: float | None  # its req/s over the one-worker layout's
    workers_beat_batching: bool | None  # more single-image workers gain at least what batching gains
    multi_image_requests: bool
    server_batch_size: int


def multi_image(
    inference: dict[str, Any], arch: str, capacity: dict[str, Any] | None = None
) -> MultiImageDecision | None:
    """Whether the API should take several images per request, from ``arch``'s forward throughput and,
    where measured, the whole-request capacity by worker layout. The answer stays no (one image per
    request is the API contract, and a batched request answers only after all its images); the numbers
    say whether the CPU argument (more workers beat batching) holds on this host."""
    models = inference.get("models", {})
    if arch not in models:
        return None
    variants = models[arch]["variants"]
    best = best_variant(models[arch])
    b1 = 1000 / variants[best]["latency_ms"]["p50"]
    # Each batch size in its own fastest fp32 layout: a multi-image endpoint would run whichever wins.
    with_b8 = [n for n, v in variants.items() if n in FP32_CPU_VARIANTS and "8" in v["throughput"]]
    best8 = max(with_b8, key=lambda n: variants[n]["throughput"]["8"]["median"]) if with_b8 else None
    b8 = variants[best8]["throughput"]["8"]["median"] if best8 else None
    gain = b8 / b1 if b8 else math.nan
    layouts = (capacity or {}).get("layouts", [])
    layout = single_threads = layout_gain = beats = None
    if len(layouts) > 1:
        single = next((x for x in layouts if x["workers"] == 1), layouts[0])
        top = max(layouts, key=lambda x: x["rps"])
        layout, single_threads = (top["workers"], top["threads"]), single["threads"]
        layout_gain = top["rps"] / single["rps"]
        beats = None if math.isnan(gain) else layout_gain >= gain
    return MultiImageDecision(
        arch=arch,
        batch1_variant=best,
        batch1_img_s=b1,
        batch8_variant=best8,
        batch8_img_s=b8,
        batch_gain=gain,
        layout=layout,
        single_worker_threads=single_threads,
        layout_gain=layout_gain,
        workers_beat_batching=beats,
        multi_image_requests=False,
        server_batch_size=SERVER_BATCH_SIZE,
    )


class LoaderKeepsUp(NamedTuple):
    processes: str
    loader_img_s: float  # the data loader alone
    step_img_s: float  # the fastest training step measured beside it
    keeps_up: bool

    @property
    def headroom(self) -> float:
        return self.loader_img_s / self.step_img_s


def training_loader_keeps_up(training: dict[str, Any]) -> list[LoaderKeepsUp]:
    """Per DDP process count: whether the loader alone delivers more than the fastest step consumes."""
    out = []
    for processes, run in training["runs"].items():
        rates = run["images_per_sec_per_process"]
        loader = rates["data loader alone"]["median"]
        fastest = max(v["median"] for k, v in rates.items() if k != "data loader alone")
        out.append(LoaderKeepsUp(processes, loader, fastest, loader > fastest))
    return out


class InputPipelineBottleneck(NamedTuple):
    cpu_step_bound: bool  # for every image set the loader alone outruns the full step on this CPU
    gpu_loader_bound: bool  # one loader worker delivers less than the GPU target rate, on any path


def input_pipeline_bottleneck(loader: dict[str, Any]) -> InputPipelineBottleneck:
    """Where the training input pipeline limits a step: on this CPU, and against the GPU target rate."""
    steps = loader["loader_vs_step"]["images_per_sec"].values()
    target = loader["target"]["images_per_sec"]
    per_worker = [
        stats["median"]
        for entry in loader["per_worker"].values()
        for path, stats in entry["images_per_sec"].items()
        if path != "decode"
    ]
    return InputPipelineBottleneck(
        cpu_step_bound=all(r["data loader alone"]["median"] > r["full step"]["median"] for r in steps),
        gpu_loader_bound=any(rate < target for rate in per_worker),
    )


def is_most_of(part: float, whole: float) -> bool:
    """Whether ``part`` is more than half of ``whole`` (what "most of the cost" claims)."""
    return part > whole / 2
