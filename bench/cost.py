"""Cost per 1M predictions, monthly cost at a request rate, and the autoscaling target, from throughput.

    python -m bench.cost --cpu-rps-per-core 6.5 --request-seconds 0.09 [--json]
    python -m bench.cost --from docs/benchmarks.json
    python -m bench.cost --stages [--json]

``--stages`` prices each stage of cdk.json with no traffic and in a few usage patterns (idle all month,
working sessions, 24/7), and gives the cold start of a stage that scales to zero
(``serving_mode=inference_component``): :func:`stage_costs_from_cdk_json`. Its constants and their
sources are in one place, :data:`SCALE_TO_ZERO_SOURCES` and the names after it.

Inputs are the measured capacity of this host (requests/s per core for the whole per-request work:
decode, preset, forward) and a dated price table. The autoscaling target follows AWS's load-test
guidance for ``SageMakerVariantInvocationsPerInstance``: the maximum requests/s one instance
sustains, times a safety factor of 0.5, times 60 (the metric counts per minute)
("Load testing your auto scaling configuration", SageMaker Developer Guide).

Prices: on-demand list prices, us-east-1, as listed on the AWS pricing pages named in
:data:`PRICE_SOURCES` as of :data:`PRICE_DATE`. They were not re-read on the day of the run (no
network): check the pages before deciding on money.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PRICE_DATE = "2026-11-25 (list prices as known that day; not re-fetched: no network here)"
PRICE_SOURCES = {
    "sagemaker": "https://aws.amazon.com/sagemaker/pricing/ (Real-Time Inference and Serverless Inference)",
    "rekognition": "https://aws.amazon.com/rekognition/pricing/ (Custom Labels, inference hours)",
    "lambda": "https://aws.amazon.com/lambda/pricing/ (Arm/Graviton, requests and GB-seconds)",
}
SERVING_MODES = ("instance", "serverless", "inference_component")  # stacks/config.py SERVING_MODES
REGION = "us-east-1"
HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
SAFETY_FACTOR = 0.5  # AWS's load-test guidance for SageMakerVariantInvocationsPerInstance
REQUEST_RATES = (1, 10, 100)
# Capacities are kept to two significant figures: the 0.5 safety factor in the target dwarfs anything
# finer, and run-to-run noise would otherwise change the derived config on every run.
SIGNIFICANT_FIGURES = 2


@dataclass(frozen=True)
class Instance:
    name: str
    vcpus: int
    memory_gib: int
    accelerator: str | None
    usd_per_hour: float


# SageMaker real-time inference, on-demand, us-east-1 (PRICE_SOURCES["sagemaker"], PRICE_DATE).
INSTANCES: dict[str, Instance] = {
    instance.name: instance
    for instance in (
        Instance("ml.c6i.xlarge", 4, 8, None, 0.204),
        Instance("ml.c7i.xlarge", 4, 8, None, 0.2142),
        Instance("ml.m5.xlarge", 4, 16, None, 0.23),
        Instance("ml.g4dn.xlarge", 4, 16, "NVIDIA T4 16 GB", 0.7364),
        Instance("ml.g5.xlarge", 4, 16, "NVIDIA A10G 24 GB", 1.408),
    )
}
# SageMaker Serverless Inference (CPU only): compute per GB-second of the configured memory, plus
# data processed in and out per GB; no per-request fee (unlike Lambda). Max memory 6144 MB.
SERVERLESS_USD_PER_GB_SECOND = 0.00002
SERVERLESS_USD_PER_GB_DATA = 0.016
SERVERLESS_MAX_CONCURRENCY = 200  # per endpoint (default quota)
# Rekognition Custom Labels: per inference-unit hour while the model runs, whatever the traffic.
REKOGNITION_USD_PER_IU_HOUR = 4.00
# AWS publishes no fixed TPS per inference unit ("depends on the model and image size"); this is an
# assumption to replace with a load test of the trained model.
REKOGNITION_ASSUMED_TPS_PER_IU = 5.0
# Lambda (the API layer in front of any of these): Arm (the function is arm64,
# stacks/constructs/prediction_function.py), per request and per GB-second; first pricing tier.
LAMBDA_USD_PER_REQUEST = 0.20 / 1_000_000
LAMBDA_USD_PER_GB_SECOND = 0.0000133334
LAMBDA_USD_PER_GB_SECOND_PROVISIONED = 0.0000033334
# Lambda allocates CPU in proportion to memory: at 1,769 MB a function has the equivalent of one vCPU
# (AWS Lambda Developer Guide, "Configure Lambda function memory": "Memory and computing power").
LAMBDA_MB_PER_VCPU = 1769
# GPU forward time at batch 1 and batch 8 (ResNet-50, PyTorch, NVIDIA T4): NVIDIA
# DeepLearningExamples, PyTorch/Classification/ConvNets/resnet50v1.5/README.md, "Inference
# performance: NVIDIA T4": FP32 batch 1 98 img/s (10.7 ms), mixed precision batch 8 652 img/s.
# Not measured here. No comparable published table for the A10G (g5): taken as at least a T4.
GPU_REFERENCE = {
    "source": "NVIDIA DeepLearningExamples ResNet-50 v1.5 PyTorch README, inference performance, NVIDIA T4",
    "batch1_img_per_s": 98.0,
    "batch8_img_per_s": 652.0,
}


def invocations_per_instance_target(max_rps_per_instance: float, safety_factor: float = SAFETY_FACTOR) -> int:
    """``SageMakerVariantInvocationsPerInstance`` target: max RPS x safety factor x 60, at least 1."""
    if max_rps_per_instance <= 0:
        raise ValueError("max_rps_per_instance must be positive")
    if not 0 < safety_factor <= 1:
        raise ValueError("safety_factor must be in (0, 1]")
    # The epsilon keeps float error from taking one off an exact product (4.1 x 0.5 x 60 = 122.999...).
    return max(1, math.floor(max_rps_per_instance * safety_factor * 60 + 1e-9))


def round_down(value: float, figures: int = SIGNIFICANT_FIGURES) -> float:
    """``value`` rounded down to ``figures`` significant figures (never up: these are capacities)."""
    if value <= 0:
        raise ValueError("value must be positive")
    step = 10 ** (math.floor(math.log10(value)) - figures + 1)
    return round(math.floor(value / step + 1e-9) * step, 10)


def instances_needed(rps: float, target_per_instance: int, min_instances: int = 1) -> int:
    """Instances target tracking settles on for a steady ``rps``: invocations per minute / target."""
    if rps < 0:
        raise ValueError("rps must be >= 0")
    return max(min_instances, math.ceil(rps * 60 / target_per_instance - 1e-9))


def cost_per_million_at_capacity(usd_per_hour: float, max_rps: float) -> float:
    """The floor: an instance kept 100% busy (autoscaling at the target runs it at about half)."""
    return usd_per_hour / (max_rps * 3600) * 1_000_000


@dataclass(frozen=True)
class Capacity:
    """How many requests/s one instance of a type sustains, and where the number comes from."""

    instance: str
    max_rps: float
    basis: str
    # The TorchServe layout the number assumes (SAGEMAKER_MODEL_SERVER_WORKERS, OMP_NUM_THREADS).
    workers: int
    threads_per_worker: int


def physical_cores(instance: Instance) -> int:
    """Cores doing the CPU work: every instance in :data:`INSTANCES` is an Intel/AMD type whose vCPUs
    are hyperthreads, two per core (this host's measured vCPUs are whole cores)."""
    return max(1, instance.vcpus // 2)


def cpu_capacity(instance: Instance, rps_per_core: float, threads_per_worker: int = 1) -> Capacity:
    """A CPU instance's capacity: this host's measured requests/s per core times the instance's cores.

    Scaled by physical cores, not vCPUs: the second hyperthread of a core adds little to a
    compute-bound forward pass, so counting it would promise about twice what the instance does.
    Workers: the best layout measured here (``threads_per_worker`` threads each), one per vCPU's worth.
    """
    workers = max(1, instance.vcpus // threads_per_worker)
    return Capacity(
        instance.name,
        rps_per_core * physical_cores(instance),
        "measured here per core, scaled by physical cores",
        workers,
        threads_per_worker,
    )


def gpu_capacity(instance: Instance, cpu_seconds_per_request: float, batched: bool) -> Capacity:
    """A GPU instance's capacity, estimated: min(CPU side, GPU side).

    Every request is decoded and preprocessed on the host CPU (``cpu_seconds_per_request``, measured
    here on one core) in its TorchServe worker, so the layout is one single-threaded worker per vCPU
    (TorchServe's own default on a GPU host is one worker per GPU: see :func:`single_worker_rps`).
    The GPU side is NVIDIA's published ResNet-50 rate at batch 1, or at batch 8 for a custom
    TorchServe handler that stacks requests (the toolkit's default handler runs a batch one request
    at a time: see docs/benchmarks.md).
    """
    cpu_side = physical_cores(instance) / cpu_seconds_per_request
    gpu_side = GPU_REFERENCE["batch8_img_per_s" if batched else "batch1_img_per_s"]
    batch = "batch 8" if batched else "batch 1"
    basis = f"estimated: min(measured decode x {physical_cores(instance)} cores, published GPU {batch} rate)"
    return Capacity(instance.name, min(cpu_side, gpu_side), basis, instance.vcpus, 1)


def single_worker_rps(cpu_seconds_per_request: float) -> float:
    """TorchServe's default on a one-GPU instance: one worker decodes, then waits for its forward."""
    return 1 / (cpu_seconds_per_request + 1 / GPU_REFERENCE["batch1_img_per_s"])


def instance_option(capacity: Capacity, min_instances: int, rates: Sequence[float] = REQUEST_RATES) -> dict:
    instance = INSTANCES[capacity.instance]
    max_rps = round_down(capacity.max_rps)
    target = invocations_per_instance_target(max_rps)
    monthly = {}
    for rps in rates:
        count = instances_needed(rps, target, min_instances)
        monthly[str(rps)] = {
            "instances": count,
            "usd_per_month": count * instance.usd_per_hour * HOURS_PER_MONTH,
            "usd_per_million": count * instance.usd_per_hour / (rps * 3600) * 1_000_000,
        }
    return {
        "option": capacity.instance,
        "kind": "instance",
        "usd_per_hour": instance.usd_per_hour,
        "max_rps_per_instance": max_rps,
        "capacity_basis": capacity.basis,
        "workers": capacity.workers,
        "threads_per_worker": capacity.threads_per_worker,
        "target_invocations_per_instance": target,
        "usd_per_million_at_capacity": cost_per_million_at_capacity(instance.usd_per_hour, max_rps),
        "monthly": monthly,
    }


def serverless_option(
    request_seconds: float, memory_mb: int = 6144, payload_bytes: int = 200_000, rates=REQUEST_RATES
) -> dict:
    """SageMaker Serverless Inference: pay per GB-second of memory while a request runs, plus data."""
    gb = memory_mb / 1024
    per_request = request_seconds * gb * SERVERLESS_USD_PER_GB_SECOND + (
        (payload_bytes + 1_000) / 1e9 * SERVERLESS_USD_PER_GB_DATA
    )
    monthly = {
        str(rps): {
            "usd_per_month": rps * SECONDS_PER_MONTH * per_request,
            "usd_per_million": per_request * 1_000_000,
            "concurrency_needed": math.ceil(rps * request_seconds),
            "within_quota": rps * request_seconds <= SERVERLESS_MAX_CONCURRENCY,
        }
        for rps in rates
    }
    return {
        "option": f"SageMaker Serverless ({memory_mb} MB)",
        "kind": "serverless",
        "request_seconds": request_seconds,
        "usd_per_million_at_capacity": per_request * 1_000_000,
        "capacity_basis": "duration = measured single-request latency on this host (CPU); cold starts "
        "not included",
        "monthly": monthly,
    }


def rekognition_option(tps_per_iu: float = REKOGNITION_ASSUMED_TPS_PER_IU, rates=REQUEST_RATES) -> dict:
    monthly = {}
    for rps in rates:
        units = max(1, math.ceil(rps / tps_per_iu))
        usd = units * REKOGNITION_USD_PER_IU_HOUR * HOURS_PER_MONTH
        monthly[str(rps)] = {
            "inference_units": units,
            "usd_per_month": usd,
            "usd_per_million": usd / (rps * SECONDS_PER_MONTH) * 1_000_000,
        }
    return {
        "option": "Rekognition Custom Labels",
        "kind": "managed",
        "usd_per_million_at_capacity": cost_per_million_at_capacity(REKOGNITION_USD_PER_IU_HOUR, tps_per_iu),
        "capacity_basis": f"assumed {tps_per_iu:g} TPS per inference unit (AWS publishes no fixed figure)",
        "monthly": monthly,
    }


def lambda_cost(request_seconds: float, memory_mb: int = 512, rates=REQUEST_RATES) -> dict:
    """The API layer: one Lambda invocation per prediction, billed while it waits for the endpoint."""
    per_request = LAMBDA_USD_PER_REQUEST + request_seconds * memory_mb / 1024 * LAMBDA_USD_PER_GB_SECOND
    return {
        "memory_mb": memory_mb,
        "request_seconds": request_seconds,
        "usd_per_million": per_request * 1_000_000,
        "monthly": {str(rps): rps * SECONDS_PER_MONTH * per_request for rps in rates},
        "provisioned_usd_per_month_per_unit": lambda_provisioned_usd_per_month(1, memory_mb),
    }


def lambda_provisioned_usd_per_month(units: int, memory_mb: int = 512) -> float:
    """Provisioned concurrency is billed per GB-second it is configured, traffic or not."""
    return units * memory_mb / 1024 * SECONDS_PER_MONTH * LAMBDA_USD_PER_GB_SECOND_PROVISIONED


def provisioned_concurrency(rps: float, request_seconds: float, utilization: float = 0.7) -> int:
    """Little's law: concurrent executions = arrival rate x duration, over the utilization target."""
    return max(1, math.ceil(rps * request_seconds / utilization))


def compare(
    cpu_rps_per_core: float,
    request_seconds: float,
    cpu_decode_seconds: float,
    min_instances: int = 1,
    rates: Sequence[float] = REQUEST_RATES,
    threads_per_worker: int = 1,
) -> dict[str, Any]:
    """Every option at every rate, from the measured numbers."""
    options = []
    for instance in INSTANCES.values():
        if instance.accelerator is None:
            capacity = cpu_capacity(instance, cpu_rps_per_core, threads_per_worker)
            option = instance_option(capacity, min_instances, rates)
            option["handler"] = "default"
            options.append(option)
        else:
            for batched in (False, True):
                option = instance_option(
                    gpu_capacity(instance, cpu_decode_seconds, batched), min_instances, rates
                )
                option["option"] += " (batch 8, custom handler)" if batched else " (batch 1)"
                option["handler"] = "custom batch 8" if batched else "default"
                options.append(option)
    options.append(serverless_option(request_seconds, rates=rates))
    options.append(rekognition_option(rates=rates))
    return {
        "region": REGION,
        "price_date": PRICE_DATE,
        "price_sources": PRICE_SOURCES,
        "gpu_reference": GPU_REFERENCE,
        "safety_factor": SAFETY_FACTOR,
        "min_instances": min_instances,
        "rates": list(rates),
        "instances": {name: asdict(instance) for name, instance in INSTANCES.items()},
        "options": options,
        "lambda": lambda_cost(request_seconds, rates=rates),
    }


def cheapest(comparison: dict[str, Any], rps: float, kind: str | None = None) -> dict[str, Any]:
    candidates = [o for o in comparison["options"] if kind is None or o["kind"] == kind]
    return min(candidates, key=lambda option: option["monthly"][str(rps)]["usd_per_month"])


def format_table(comparison: dict[str, Any]) -> str:
    rates = comparison["rates"]
    header = "| option | max req/s per instance | target/instance | $/1M at capacity | " + " | ".join(
        f"$/month @ {r} req/s" for r in rates
    )
    lines = [header + " |", "|" + " --- |" * (4 + len(rates))]
    for option in comparison["options"]:
        max_rps = option.get("max_rps_per_instance")
        target = option.get("target_invocations_per_instance")
        cells = [
            option["option"],
            f"{max_rps:.1f}" if max_rps else "-",
            str(target) if target else "-",
            f"{option['usd_per_million_at_capacity']:.2f}",
        ]
        for rate in rates:
            entry = option["monthly"][str(rate)]
            count = entry.get("instances", entry.get("inference_units"))
            cells.append(f"{entry['usd_per_month']:,.0f}" + (f" ({count})" if count else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- Idle cost and scale to zero (serving_mode=inference_component) -------------------------------------
# An inference component on an endpoint whose managed instance scaling has MinInstanceCount 0: with no
# traffic for scale_to_zero_idle_minutes its copies scale in to zero, then the instances go; the first
# request after that starts an instance and a copy again. Not measured here (no AWS account): every
# number below is AWS's, from these two pages.
SCALE_TO_ZERO_SOURCES = {
    "docs": "https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-zero-instances.html "
    '("Scale an endpoint to zero instances", Amazon SageMaker AI Developer Guide)',
    "blog": "https://aws.amazon.com/blogs/machine-learning/unlock-cost-savings-with-the-new-scale-down-to-"
    'zero-feature-in-amazon-sagemaker-inference/ ("Unlock cost savings with the new scale down to zero '
    'feature in SageMaker Inference", AWS Machine Learning Blog, re:Invent 2024)',
}
# What each page says, word for word, that the constants below rest on.
SCALE_TO_ZERO_QUOTES = {
    "docs": "the provisioning process takes several minutes. During that time, any attempts to invoke "
    "the endpoint will produce an error",
    "blog": "scale the endpoint to zero model copies in approximately 15 minutes, and then take an "
    "additional 10 minutes to fully scale down the underlying instances",
}
# After the copies reach zero the instances take about 10 more minutes to go (SCALE_TO_ZERO_QUOTES
# ["blog"]). The blog's 15 minutes are its own policy's idle period; here, scale_to_zero_idle_minutes.
INSTANCE_SCALE_IN_MINUTES = 10.0
# The blog's measured scale-out from zero (Llama3-8B on a GPU instance), minutes: the CloudWatch alarm
# firing, the instance starting, the model copy starting (container pull and model load).
BLOG_COLD_START_MINUTES = {"alarm": 1.0, "instance": 1.75, "model_copy": 2.3}
# Our estimate, from zero to the first answer: at least the blog's alarm and instance steps (our copy
# pulls the multi-GB PyTorch DLC too, so it is not free), at most the blog's whole measured scale-out
# (its copy loads 16 GB of weights; ours loads one small CNN). Not measured here. Meanwhile the stage's
# Lambda answers 503 model_starting with a Retry-After header.
COLD_START_MINUTES = (
    BLOG_COLD_START_MINUTES["alarm"] + BLOG_COLD_START_MINUTES["instance"],
    sum(BLOG_COLD_START_MINUTES.values()),
)


@dataclass(frozen=True)
class UsagePattern:
    """Traffic in a month: ``sessions`` stretches of ``session_hours`` each, no gap in one longer than
    the idle timeout, at a load the minimum instance count carries (dev's design load does)."""

    name: str
    sessions: int
    session_hours: float


USAGE_PATTERNS = (
    UsagePattern("idle all month", 0, 0.0),
    UsagePattern("1 h a day, 20 working days", 20, 1.0),
    UsagePattern("8 h a day, 20 working days", 20, 8.0),
    UsagePattern("traffic 24/7", 1, float(HOURS_PER_MONTH)),
)


def _check_mode(serving_mode: str) -> None:
    if serving_mode not in SERVING_MODES:
        raise ValueError(f"serving_mode must be one of {SERVING_MODES} (got {serving_mode!r})")


def idle_instances(serving_mode: str, min_instances: int) -> int:
    """Instances running with no traffic: the minimum in instance mode, none in the other two."""
    _check_mode(serving_mode)
    return min_instances if serving_mode == "instance" else 0


def idle_usd_per_month(serving_mode: str, usd_per_hour: float, min_instances: int) -> float:
    """Compute cost of a month with no traffic at all: ``min_instances x usd_per_hour x 730`` in instance
    mode; 0 for serverless (billed per request only; the stacks configure no provisioned concurrency)
    and for inference_component (no instance while idle; each idle episode is :func:`idle_episode_usd`)."""
    return idle_instances(serving_mode, min_instances) * usd_per_hour * HOURS_PER_MONTH


def idle_episode_minutes(
    scale_to_zero_idle_minutes: int, instance_scale_in_minutes: float = INSTANCE_SCALE_IN_MINUTES
) -> float:
    """Minutes an inference_component stage keeps its instance after the last request: the idle timeout
    until the copies reach zero, then the instance's own scale-in."""
    if scale_to_zero_idle_minutes < 0:
        raise ValueError("scale_to_zero_idle_minutes must be >= 0")
    return scale_to_zero_idle_minutes + instance_scale_in_minutes


def idle_episode_usd(usd_per_hour: float, scale_to_zero_idle_minutes: int, instances: int = 1) -> float:
    """What one idle episode costs: the instances billed through :func:`idle_episode_minutes`."""
    return instances * usd_per_hour * idle_episode_minutes(scale_to_zero_idle_minutes) / 60


def instance_hours_per_month(
    serving_mode: str,
    pattern: UsagePattern,
    min_instances: int,
    scale_to_zero_idle_minutes: int,
    cold_start_minutes: float = COLD_START_MINUTES[1],
    serving_instances: int = 1,
) -> float:
    """Instance-hours billed in a month of ``pattern``.

    instance: ``min_instances`` around the clock, whatever the traffic. serverless: none. inference_
    component: per session, the cold start (the upper estimate, counted as billed), the session's hours
    and the idle episode, on ``serving_instances``; at most the month.
    """
    _check_mode(serving_mode)
    if serving_mode == "instance":
        return min_instances * HOURS_PER_MONTH
    if serving_mode == "serverless":
        return 0.0
    per_session = (
        cold_start_minutes / 60
        + pattern.session_hours
        + idle_episode_minutes(scale_to_zero_idle_minutes) / 60
    )
    return serving_instances * min(HOURS_PER_MONTH, pattern.sessions * per_session)


def stage_cost(
    stage: str,
    serving_mode: str,
    instance_type: str,
    min_instances: int,
    scale_to_zero_idle_minutes: int,
    lambda_provisioned_concurrency: int,
    lambda_memory_mb: int = 512,
    patterns: Sequence[UsagePattern] = USAGE_PATTERNS,
) -> dict[str, Any]:
    """One stage's idle cost per month, its cost in each usage pattern and, when it scales to zero, the
    idle episode and the cold start. Dollars are instance-hours at :data:`INSTANCES` prices plus the
    Lambda's provisioned concurrency (billed in every mode and pattern); per-request charges (Lambda
    requests, serverless compute) come on top, from the comparison table."""
    _check_mode(serving_mode)
    if serving_mode != "serverless" and instance_type not in INSTANCES:
        raise ValueError(f"instance_type {instance_type!r} has no price in INSTANCES")
    hourly = 0.0 if serving_mode == "serverless" else INSTANCES[instance_type].usd_per_hour
    lambda_usd = lambda_provisioned_usd_per_month(lambda_provisioned_concurrency, lambda_memory_mb)
    compute = idle_usd_per_month(serving_mode, hourly, min_instances)
    scales_to_zero = serving_mode == "inference_component"
    monthly = {}
    for pattern in patterns:
        hours = instance_hours_per_month(serving_mode, pattern, min_instances, scale_to_zero_idle_minutes)
        monthly[pattern.name] = {"instance_hours": hours, "usd_per_month": hours * hourly + lambda_usd}
    return {
        "stage": stage,
        "serving_mode": serving_mode,
        "instance_type": None if serving_mode == "serverless" else instance_type,
        "usd_per_hour": hourly,
        "idle_instances": idle_instances(serving_mode, min_instances),
        "idle_compute_usd_per_month": compute,
        "lambda_provisioned_concurrency": lambda_provisioned_concurrency,
        "lambda_provisioned_usd_per_month": lambda_usd,
        "idle_usd_per_month": compute + lambda_usd,
        "per_request_compute": serving_mode == "serverless",
        "idle_episode": (
            {
                "scale_to_zero_idle_minutes": scale_to_zero_idle_minutes,
                "instance_scale_in_minutes": INSTANCE_SCALE_IN_MINUTES,
                "minutes": idle_episode_minutes(scale_to_zero_idle_minutes),
                "usd": idle_episode_usd(hourly, scale_to_zero_idle_minutes),
            }
            if scales_to_zero
            else None
        ),
        "cold_start_minutes": list(COLD_START_MINUTES) if scales_to_zero else None,
        "monthly": monthly,
    }


def stage_costs_from_cdk_json(stages: Sequence[str] = ("dev", "prod")) -> list[dict[str, Any]]:
    """:func:`stage_cost` for each stage as cdk.json configures it (the repo's own loader); a stage that
    does not run instances around the clock gets a second row, the same stage in instance mode, so the
    trade is visible."""
    from stacks.model_environment import stage_config_from_cdk_json

    rows = []
    for stage in stages:
        config = stage_config_from_cdk_json(stage)
        modes = [config.serving_mode] + (["instance"] if config.serving_mode != "instance" else [])
        for mode in modes:
            label = stage if mode == config.serving_mode else f"{stage} if instance"
            minimum = config.min_instances
            if mode == "inference_component" and not config.autoscaling_enabled:
                # Without autoscaling its one copy (one instance) runs all month: priced as what it is.
                mode, minimum, label = "instance", 1, f"{label} (autoscaling off: one copy always on)"
            rows.append(
                stage_cost(
                    label,
                    mode,
                    config.instance_type,
                    minimum,
                    config.scale_to_zero_idle_minutes,
                    config.lambda_provisioned_concurrency,
                    config.lambda_memory_mb,
                )
            )
    return rows


def format_stage_table(rows: Sequence[dict[str, Any]]) -> str:
    """``$/month (instance-hours)`` per stage and usage pattern; the idle episode; the cold start (minutes
    from zero to the first answer)."""
    patterns = list(rows[0]["monthly"]) if rows else []
    header = ["stage", "serving mode", "instances while idle", *patterns, "one idle episode", "cold start"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        instance = f" `{row['instance_type']}`" if row["instance_type"] else ""
        cells = [row["stage"], f"{row['serving_mode']}{instance}", str(row["idle_instances"])]
        for name in patterns:
            entry = row["monthly"][name]
            extra = " + per request" if row["per_request_compute"] else ""
            cells.append(f"{entry['usd_per_month']:,.0f} ({entry['instance_hours']:,.0f} h){extra}")
        episode = row["idle_episode"]
        cells.append(
            f"{episode['minutes']:g} min ({episode['scale_to_zero_idle_minutes']} idle + "
            f"{episode['instance_scale_in_minutes']:g} scale-in), ${episode['usd']:.2f}"
            if episode
            else "none (nothing scales in)"
        )
        low_high = row["cold_start_minutes"]
        cells.append(
            f"{low_high[0]:.1f}-{low_high[1]:.1f} min (estimate, not measured here)"
            if low_high
            else "none (always on)"
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--from", dest="source", type=Path, help="docs/benchmarks.json written by python -m bench"
    )
    parser.add_argument("--cpu-rps-per-core", type=float, help="measured requests/s per core (whole request)")
    parser.add_argument("--request-seconds", type=float, help="measured single-request latency, seconds")
    parser.add_argument("--cpu-decode-seconds", type=float, default=0.03, help="decode+preset, 1 thread")
    parser.add_argument("--min-instances", type=int, default=1)
    parser.add_argument(
        "--stages", action="store_true", help="idle and usage-pattern cost of each stage in cdk.json"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.stages:
        rows = stage_costs_from_cdk_json()
        print(json.dumps(rows, indent=2) if args.json else format_stage_table(rows))
        return 0
    if args.source:
        inputs = json.loads(args.source.read_text())["cost_inputs"]
        rps_per_core, seconds = inputs["cpu_rps_per_core"], inputs["request_seconds"]
        decode = inputs["cpu_decode_seconds"]
    elif args.cpu_rps_per_core and args.request_seconds:
        rps_per_core, seconds, decode = args.cpu_rps_per_core, args.request_seconds, args.cpu_decode_seconds
    else:
        parser.error("give --from FILE, or --cpu-rps-per-core and --request-seconds")
    comparison = compare(rps_per_core, seconds, decode, args.min_instances)
    print(json.dumps(comparison, indent=2) if args.json else format_table(comparison))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
