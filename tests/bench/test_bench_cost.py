"""The cost model: the autoscaling target formula, instance counts, per-1M costs, the comparison, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import cost

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("max_rps", "expected"),
    [(40.0, 1200), (10.0, 300), (7.3, 219), (0.02, 1), (98.0, 2940), (4.1, 123), (8.2, 246)],
)
def test_invocations_target_is_max_rps_times_half_times_60(max_rps, expected):
    assert cost.invocations_per_instance_target(max_rps) == expected


def test_invocations_target_rounds_down_and_takes_a_safety_factor():
    assert cost.invocations_per_instance_target(10.0, safety_factor=0.25) == 150
    assert cost.invocations_per_instance_target(1.99) == 59  # 59.7 -> 59: never above the safe rate


@pytest.mark.parametrize("bad", [0, -1.0])
def test_invocations_target_rejects_non_positive_throughput(bad):
    with pytest.raises(ValueError, match="positive"):
        cost.invocations_per_instance_target(bad)


def test_invocations_target_rejects_a_safety_factor_outside_zero_one():
    with pytest.raises(ValueError, match="safety_factor"):
        cost.invocations_per_instance_target(10.0, safety_factor=1.5)


def test_instances_needed_is_invocations_per_minute_over_target_rounded_up():
    # 100 req/s = 6000 per minute; a target of 1200 per instance needs exactly 5, 1000 needs 6.
    assert cost.instances_needed(100, 1200) == 5
    assert cost.instances_needed(100, 1000) == 6
    assert cost.instances_needed(100.1, 1200) == 6
    assert cost.instances_needed(1, 1200, min_instances=2) == 2
    assert cost.instances_needed(0, 1200) == 1


def test_cost_per_million_at_capacity():
    # $0.36/h serving 10 req/s = 36,000 req/h -> $10 per 1M requests.
    assert cost.cost_per_million_at_capacity(0.36, 10) == pytest.approx(10.0)


def test_cpu_capacity_scales_the_measured_rate_per_core_by_physical_cores():
    instance = cost.INSTANCES["ml.c7i.xlarge"]  # 4 vCPUs = 2 cores x 2 hyperthreads
    capacity = cost.cpu_capacity(instance, rps_per_core=5.0, threads_per_worker=1)
    assert capacity.max_rps == pytest.approx(10.0)
    assert "physical cores" in capacity.basis
    # One single-threaded worker per vCPU; two-thread workers halve the count.
    assert (capacity.workers, capacity.threads_per_worker) == (4, 1)
    assert cost.cpu_capacity(instance, 5.0, threads_per_worker=2).workers == 2


def test_gpu_capacity_is_the_smaller_of_cpu_decode_and_gpu_reference():
    instance = cost.INSTANCES["ml.g4dn.xlarge"]
    # Slow decode: 2 cores / 0.1 s = 20 req/s, below the GPU's 98 img/s at batch 1.
    assert cost.gpu_capacity(instance, 0.1, batched=False).max_rps == pytest.approx(20.0)
    # Fast decode: the GPU reference bounds it.
    assert cost.gpu_capacity(instance, 0.001, batched=False).max_rps == cost.GPU_REFERENCE["batch1_img_per_s"]
    assert cost.gpu_capacity(instance, 0.001, batched=True).max_rps == cost.GPU_REFERENCE["batch8_img_per_s"]
    # Decoding needs a worker per vCPU: TorchServe's one worker per GPU would decode on one core.
    assert cost.gpu_capacity(instance, 0.1, batched=False).workers == instance.vcpus


def test_one_torchserve_worker_serializes_decode_and_forward():
    # 25 ms of decode + 1/98 s of forward, one after the other: about 28.5 req/s, far below 2 cores.
    assert cost.single_worker_rps(0.025) == pytest.approx(1 / (0.025 + 1 / 98.0))
    g4dn = cost.INSTANCES["ml.g4dn.xlarge"]
    assert cost.single_worker_rps(0.025) < cost.gpu_capacity(g4dn, 0.025, batched=False).max_rps


@pytest.mark.parametrize(
    ("value", "expected"),
    [(91.7, 91.0), (28.92, 28.0), (14.45, 14.0), (98.0, 98.0), (0.0567, 0.056), (1234, 1200)],
)
def test_capacities_round_down_to_two_significant_figures(value, expected):
    assert cost.round_down(value) == pytest.approx(expected)


def test_round_down_rejects_non_positive_values():
    with pytest.raises(ValueError, match="positive"):
        cost.round_down(0)


def test_instance_option_monthly_cost_follows_instance_count():
    capacity = cost.Capacity("ml.c6i.xlarge", max_rps=20.9, basis="test", workers=4, threads_per_worker=1)
    option = cost.instance_option(capacity, min_instances=2, rates=(1, 100))
    hourly = cost.INSTANCES["ml.c6i.xlarge"].usd_per_hour
    assert option["max_rps_per_instance"] == 20.0  # two significant figures, rounded down
    assert option["target_invocations_per_instance"] == 600
    assert (option["workers"], option["threads_per_worker"]) == (4, 1)
    assert option["monthly"]["1"]["instances"] == 2  # the minimum
    assert option["monthly"]["100"]["instances"] == 10  # 6000 / 600
    assert option["monthly"]["100"]["usd_per_month"] == pytest.approx(10 * hourly * cost.HOURS_PER_MONTH)
    per_million = option["monthly"]["100"]["usd_per_million"]
    assert per_million == pytest.approx(10 * hourly / (100 * 3600) * 1e6)


def test_serverless_cost_is_duration_times_memory_plus_data():
    option = cost.serverless_option(request_seconds=0.1, memory_mb=2048, payload_bytes=0, rates=(10,))
    compute = 0.1 * 2 * cost.SERVERLESS_USD_PER_GB_SECOND
    data = 1_000 / 1e9 * cost.SERVERLESS_USD_PER_GB_DATA
    assert option["usd_per_million_at_capacity"] == pytest.approx((compute + data) * 1e6)
    assert option["monthly"]["10"]["usd_per_month"] == pytest.approx(
        10 * cost.SECONDS_PER_MONTH * (compute + data)
    )
    assert option["monthly"]["10"]["concurrency_needed"] == 1


def test_rekognition_pays_whole_inference_units_even_when_idle():
    option = cost.rekognition_option(tps_per_iu=5.0, rates=(1, 10, 11))
    assert [option["monthly"][r]["inference_units"] for r in ("1", "10", "11")] == [1, 2, 3]
    assert option["monthly"]["1"]["usd_per_month"] == pytest.approx(cost.REKOGNITION_USD_PER_IU_HOUR * 730)


def test_provisioned_concurrency_is_littles_law_over_utilization():
    assert cost.provisioned_concurrency(10, 0.1, 0.7) == 2  # 1.0 / 0.7 -> 2
    assert cost.provisioned_concurrency(100, 0.05, 0.7) == math.ceil(5 / 0.7)
    assert cost.provisioned_concurrency(0, 0.1) == 1


def test_compare_covers_every_instance_type_and_the_managed_alternatives():
    comparison = cost.compare(
        cpu_rps_per_core=5.0, request_seconds=0.1, cpu_decode_seconds=0.02, min_instances=2
    )
    names = [option["option"] for option in comparison["options"]]
    for instance in ("ml.g4dn.xlarge", "ml.g5.xlarge", "ml.c7i.xlarge", "ml.c6i.xlarge", "ml.m5.xlarge"):
        assert any(name.startswith(instance) for name in names)
    assert any(name.startswith("SageMaker Serverless") for name in names)
    assert "Rekognition Custom Labels" in names
    for option in comparison["options"]:
        assert set(option["monthly"]) == {"1", "10", "100"}
    assert comparison["region"] == "us-east-1" and comparison["price_date"]


def test_cheapest_picks_the_lowest_monthly_cost():
    comparison = cost.compare(5.0, 0.1, 0.02)
    best = cost.cheapest(comparison, 100, kind="instance")
    assert all(
        best["monthly"]["100"]["usd_per_month"] <= o["monthly"]["100"]["usd_per_month"]
        for o in comparison["options"]
        if o["kind"] == "instance"
    )


def test_cli_prints_the_table(capsys):
    assert cost.main(["--cpu-rps-per-core", "5", "--request-seconds", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "ml.c7i.xlarge" in out and "$/month @ 100 req/s" in out
    # 5 req/s per core x 2 cores = 10 req/s -> target 300.
    assert "| ml.c7i.xlarge | 10.0 | 300 |" in out


def test_lambda_is_priced_for_the_architecture_the_api_stack_deploys():
    """x86 GB-seconds cost 25% more than Arm ones: pricing the wrong one skews every per-1M figure."""
    snapshot = (
        REPO_ROOT / "tests/infra/__snapshots__/test_snapshots/test_stack_matches_snapshot[prod-api].json"
    )
    resources = json.loads(snapshot.read_text())["Resources"].values()
    (function,) = [r for r in resources if r["Type"] == "AWS::Lambda::Function"]
    assert function["Properties"]["Architectures"] == ["arm64"]
    assert "Arm" in cost.PRICE_SOURCES["lambda"]
