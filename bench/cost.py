"""Cost per 1M predictions, monthly cost at a request rate, and the autoscaling target, from throughput.

    python -m bench.cost --cpu-rps-per-core 6.5 --request-seconds 0.09 [--json]
    python -m bench.cost --from docs/benchmarks.json

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
# Lambda (the API layer in front of any of these): Arm (the function is arm64, stacks/api.py), per
# request and per GB-second; first pricing tier.
LAMBDA_USD_PER_REQUEST = 0.20 / 1_000_000
LAMBDA_USD_PER_GB_SECOND = 0.0000133334
LAMBDA_USD_PER_GB_SECOND_PROVISIONED = 0.0000033334
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
        "provisioned_usd_per_month_per_unit": memory_mb
        / 1024
        * SECONDS_PER_MONTH
        * LAMBDA_USD_PER_GB_SECOND_PROVISIONED,
    }


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--from", dest="source", type=Path, help="docs/benchmarks.json written by python -m bench"
    )
    parser.add_argument("--cpu-rps-per-core", type=float, help="measured requests/s per core (whole request)")
    parser.add_argument("--request-seconds", type=float, help="measured single-request latency, seconds")
    parser.add_argument("--cpu-decode-seconds", type=float, default=0.03, help="decode+preset, 1 thread")
    parser.add_argument("--min-instances", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
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
