"""From measured numbers to configuration: backbone, instance type, instance counts, scaling targets.

Every rule is written here once, with its constants, so a reader can trace each config value in
``docs/benchmarks.json`` to a measurement and a rule.
"""

from __future__ import annotations

from typing import Any

from . import cost
from .inference_speed import best_variant

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
