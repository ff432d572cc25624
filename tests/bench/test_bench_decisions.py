"""The rules that turn measurements into configuration values (docs/benchmarks.json)."""

from __future__ import annotations

import pytest

from bench import cost, decisions


def _model(p50: float, top1: float) -> dict:
    return {
        "variants": {
            "eager": {"latency_ms": {"min": p50 * 1.1, "p50": p50 * 1.2, "p99": p50 * 2}},
            "channels_last": {"latency_ms": {"min": p50 * 0.9, "p50": p50, "p99": p50 * 1.5}},
        },
        "published": {"imagenet_top1": top1},
    }


def test_backbone_is_most_accurate_within_budget_with_ties_going_to_the_faster():
    inference = {
        "models": {
            "big": _model(decisions.LATENCY_BUDGET_MS * 3, 85.0),  # over budget: out
            "accurate": _model(60.0, 82.0),
            "close": _model(40.0, 81.0),  # within the tie window of "accurate" and faster
            "fast": _model(10.0, 75.0),
        }
    }
    chosen = decisions.choose_backbone(inference)
    assert chosen["arch"] == "close"
    assert chosen["variant"] == "channels_last"
    assert [row["arch"] for row in chosen["candidates"]] == ["big", "accurate", "close", "fast"]


def test_backbone_without_any_model_in_budget_still_chooses():
    inference = {"models": {"a": _model(500.0, 80.0), "b": _model(400.0, 70.0)}}
    assert decisions.choose_backbone(inference)["arch"] == "a"


def _results(rps_host: float = 20.0, cpus: int = 2) -> dict:
    return {
        "machine": {"usable_cpus": cpus},
        "serving": {
            "arch": "resnet50",
            "capacity": {"best": {"rps": rps_host, "workers": 2, "threads": 1}},
            "images": {"phone": {"ms": {"lambda": {"median": 80.0}}}},
        },
        "preprocess": {"images": {"phone": {"ms": {"draft decode + preset": {"median": 20.0}}}}},
    }


def test_derived_stage_values_follow_the_formulas():
    derived = decisions.derive(_results(rps_host=20.0, cpus=2))
    inputs = derived["cost_inputs"]
    assert inputs["cpu_rps_per_core"] == pytest.approx(10.0)
    assert inputs["request_seconds"] == pytest.approx(0.08)
    prod = derived["stages"]["prod"]
    instance = cost.INSTANCES[prod["instance_type"]]
    # A GPU type (the design's), sized by min(2 cores / 20 ms of decode = 100, NVIDIA's 98 img/s).
    assert instance.accelerator and prod["inference_image_kind"] == "gpu"
    assert prod["max_rps_per_instance"] == pytest.approx(98.0)
    assert prod["target_invocations_per_instance"] == cost.invocations_per_instance_target(98.0) == 2940
    assert (prod["inference_workers"], prod["inference_threads_per_worker"]) == (instance.vcpus, 1)
    peak = decisions.DESIGN_LOAD["prod"]["peak"]
    needed = cost.instances_needed(peak, prod["target_invocations_per_instance"], 2)
    assert prod["min_instances"] == 2
    assert prod["max_instances"] == max(3, needed)
    steady = decisions.DESIGN_LOAD["prod"]["steady"]
    assert prod["lambda_provisioned_concurrency"] == cost.provisioned_concurrency(steady, 0.08, 0.7)
    assert prod["lambda_provisioned_concurrency_max"] == cost.provisioned_concurrency(peak, 0.08, 0.7)
    dev = derived["stages"]["dev"]
    assert dev["min_instances"] == 1 and dev["max_instances"] >= 2
    assert dev["lambda_provisioned_concurrency"] == cost.provisioned_concurrency(
        decisions.DESIGN_LOAD["dev"]["steady"], 0.08, 0.7
    )


def test_provisioned_concurrency_can_always_scale_above_the_steady_value():
    # A 5 ms request: 1 concurrent execution at the steady load and at the peak alike, but the stage
    # config requires max > steady in production (stacks/config.py), as max_instances has it.
    results = _results()
    results["serving"]["images"]["phone"]["ms"]["lambda"]["median"] = 5.0
    for values in decisions.derive(results)["stages"].values():
        assert values["lambda_provisioned_concurrency"] == 1
        assert values["lambda_provisioned_concurrency_max"] == 2


def test_cpu_alternative_is_measured_per_core_and_priced_next_to_the_choice():
    prod = decisions.derive(_results(rps_host=20.0, cpus=2))["stages"]["prod"]
    alternative = prod["cpu_alternative"]
    instance = cost.INSTANCES[alternative["instance_type"]]
    assert instance.accelerator is None and alternative["inference_image_kind"] == "cpu"
    # 10 req/s per measured core x 2 physical cores of a 4-vCPU instance.
    assert alternative["max_rps_per_instance"] == pytest.approx(10.0 * cost.physical_cores(instance))
    saving = 1 - alternative["usd_per_month_at_steady_load"] / prod["usd_per_month_at_steady_load"]
    assert prod["cpu_alternative_saving_percent"] == round(100 * saving)


def test_without_the_gpu_constraint_the_cheapest_instance_wins(monkeypatch):
    monkeypatch.setattr(decisions, "REQUIRE_ACCELERATOR", False)
    prod = decisions.derive(_results())["stages"]["prod"]
    assert cost.INSTANCES[prod["instance_type"]].accelerator is None


def test_stages_never_choose_the_custom_batching_handler_the_project_does_not_ship():
    for values in decisions.derive(_results())["stages"].values():
        assert "batch" not in values["capacity_basis"] or "batch 1" in values["capacity_basis"]


def test_prod_instance_is_the_cheapest_gpu_instance_at_steady_load():
    derived = decisions.derive(_results())
    prod = derived["stages"]["prod"]
    steady = str(decisions.DESIGN_LOAD["prod"]["steady"])
    chosen_cost = prod["usd_per_month_at_steady_load"]
    gpu_options = [
        option
        for option in derived["cost"]["options"]
        if option["kind"] == "instance" and option["handler"] == "default"
        if cost.INSTANCES[option["option"].split(" ")[0]].accelerator
    ]
    assert gpu_options
    for option in gpu_options:
        assert chosen_cost <= round(option["monthly"][steady]["usd_per_month"], 2)


def test_missing_measurements_are_reported_not_invented():
    derived = decisions.derive({"machine": {"usable_cpus": 2}})
    assert "stages" not in derived
    assert "cost_error" in derived
