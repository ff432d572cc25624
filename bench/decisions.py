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
        "cpu_rps_per_vcpu": best["rps"] / cpus,
        "cpu_rps_host": best["rps"],
        "host_vcpus": cpus,
        "worker_layout": f"{best['workers']} worker(s) x {best['threads']} thread(s)",
        "request_seconds": phone["ms"]["lambda"]["median"] / 1000,
        # Draft decode + preset of the phone photo; measured with the host's threads, used per vCPU.
        "cpu_decode_seconds": preprocess["ms"]["draft decode + preset"]["median"] / 1000,
        "sources": {
            "cpu_rps_per_vcpu": "serving / capacity: best worker layout, req/s / host vCPUs",
            "request_seconds": "serving / phone image / lambda path median",
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
            inputs["cpu_rps_per_vcpu"],
            inputs["request_seconds"],
            inputs["cpu_decode_seconds"],
            min_instances=MIN_INSTANCES[stage],
        )
        for stage in ("dev", "prod")
    }
    decisions["cost"] = comparisons["prod"]
    stages = {}
    for stage, comparison in comparisons.items():
        load = DESIGN_LOAD[stage]
        # Instance type: the cheapest per month at the stage's steady load, then at its peak.
        instance_options = [o for o in comparison["options"] if o["kind"] == "instance"]
        chosen = min(
            instance_options,
            key=lambda o: (o["monthly"][str(load["steady"])]["usd_per_month"], _peak_cost(o, load["peak"])),
        )
        instance_type = chosen["option"].split(" ")[0]
        target = chosen["target_invocations_per_instance"]
        # At least one above the minimum, so that the scaling policy is exercised in every stage.
        max_instances = max(
            MIN_INSTANCES[stage] + 1, cost.instances_needed(load["peak"], target, MIN_INSTANCES[stage])
        )
        lambda_seconds = inputs["request_seconds"]
        conservative = _conservative_target(inputs, cost.INSTANCES[instance_type], target)
        stages[stage] = {
            "instance_type": instance_type,
            # The PyTorch inference DLC comes in cpu and gpu builds; the image must match the instance.
            "inference_image_kind": "gpu" if cost.INSTANCES[instance_type].accelerator else "cpu",
            "min_instances": MIN_INSTANCES[stage],
            "max_instances": max_instances,
            "target_invocations_per_instance": target,
            "max_rps_per_instance": round(chosen["max_rps_per_instance"], 2),
            "capacity_basis": chosen["capacity_basis"],
            # The same measurement scaled by physical cores instead of vCPUs (an Intel xlarge is 2 cores
            # x 2 hyperthreads; this host's vCPUs are whole cores): the floor until a load test on the
            # instance replaces both.
            "target_invocations_per_instance_conservative": conservative,
            "max_instances_conservative": max(
                MIN_INSTANCES[stage] + 1,
                cost.instances_needed(load["peak"], conservative, MIN_INSTANCES[stage]),
            ),
            "design_load_rps": load,
            "usd_per_month_at_steady_load": round(chosen["monthly"][str(load["steady"])]["usd_per_month"], 2),
            "lambda_provisioned_concurrency": cost.provisioned_concurrency(
                load["steady"], lambda_seconds, LAMBDA_UTILIZATION_TARGET
            )
            if stage == "prod"
            else 0,
            "lambda_provisioned_concurrency_max": cost.provisioned_concurrency(
                load["peak"], lambda_seconds, LAMBDA_UTILIZATION_TARGET
            )
            if stage == "prod"
            else 0,
            "cheapest_overall_at_steady_load": cost.cheapest(comparison, load["steady"])["option"],
        }
    decisions["stages"] = stages
    return decisions


def _conservative_target(inputs: dict[str, Any], instance: cost.Instance, target: int) -> int:
    if instance.accelerator is not None:
        return target  # GPU capacity is an estimate from published numbers, not a scaled measurement
    physical_cores = max(1, instance.vcpus // 2)
    return cost.invocations_per_instance_target(inputs["cpu_rps_per_vcpu"] * physical_cores)


def _peak_cost(option: dict[str, Any], peak: float) -> float:
    """Monthly cost at ``peak`` req/s for an instance option (recomputed: compare() covers 1/10/100)."""
    monthly = option["monthly"].get(str(peak))
    if monthly is not None:
        return monthly["usd_per_month"]
    count = cost.instances_needed(peak, option["target_invocations_per_instance"])
    return count * option["usd_per_hour"] * cost.HOURS_PER_MONTH
