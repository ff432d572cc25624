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


# --- Idle cost per stage, and the cold start of scaling to zero (serving_mode=inference_component) ---

G4DN_HOURLY = cost.INSTANCES["ml.g4dn.xlarge"].usd_per_hour
EIGHT_HOUR_DAYS = cost.UsagePattern("8 h a day, 20 working days", sessions=20, session_hours=8.0)


def test_an_instance_stage_pays_its_minimum_around_the_clock_with_no_traffic():
    # prod: 2 x $0.7364 x 730 h = $1,075.14 a month of nothing but waiting.
    assert cost.idle_usd_per_month("instance", G4DN_HOURLY, min_instances=2) == pytest.approx(
        2 * G4DN_HOURLY * 730
    )
    assert cost.idle_instances("instance", 2) == 2


@pytest.mark.parametrize("mode", ["inference_component", "serverless"])
def test_scale_to_zero_and_serverless_run_no_instance_while_idle(mode):
    # min_instances is the instance-mode floor; it must not leak into the modes that keep none.
    assert cost.idle_instances(mode, min_instances=2) == 0
    assert cost.idle_usd_per_month(mode, G4DN_HOURLY, min_instances=2) == 0


def test_an_idle_episode_is_the_idle_timeout_then_the_instance_scale_in():
    # AWS's blog: copies reach zero after the policy's idle period, "then ... an additional 10 minutes".
    assert "additional 10 minutes" in cost.SCALE_TO_ZERO_QUOTES["blog"]
    assert cost.INSTANCE_SCALE_IN_MINUTES == 10
    assert cost.idle_episode_minutes(30) == 40
    # One g4dn instance for 40 minutes: $0.49.
    assert cost.idle_episode_usd(G4DN_HOURLY, 30) == pytest.approx(G4DN_HOURLY * 40 / 60)
    assert cost.idle_episode_usd(G4DN_HOURLY, 30, instances=2) == pytest.approx(2 * G4DN_HOURLY * 40 / 60)


def test_a_scale_to_zero_stage_bills_each_session_its_cold_start_hours_and_idle_episode():
    hours = cost.instance_hours_per_month(
        "inference_component",
        EIGHT_HOUR_DAYS,
        min_instances=1,
        scale_to_zero_idle_minutes=30,
        cold_start_minutes=5.0,
    )
    # 20 x (5 min + 8 h + 40 min) = 20 x 8.75 h.
    assert hours == pytest.approx(20 * (5 / 60 + 8 + 40 / 60))
    # Idle all month: nothing; a longer idle timeout costs more per session.
    idle = cost.UsagePattern("idle", 0, 0.0)
    assert cost.instance_hours_per_month("inference_component", idle, 1, 30) == 0
    longer = cost.instance_hours_per_month("inference_component", EIGHT_HOUR_DAYS, 1, 60, 5.0)
    assert longer - hours == pytest.approx(20 * 30 / 60)


def test_traffic_around_the_clock_bills_a_scale_to_zero_stage_the_month_not_more():
    always = cost.UsagePattern("24/7", 1, float(cost.HOURS_PER_MONTH))
    assert cost.instance_hours_per_month("inference_component", always, 1, 30) == cost.HOURS_PER_MONTH


def test_an_instance_stage_costs_the_same_in_every_usage_pattern():
    for pattern in cost.USAGE_PATTERNS:
        assert cost.instance_hours_per_month("instance", pattern, 2, 30) == 2 * cost.HOURS_PER_MONTH
        assert cost.instance_hours_per_month("serverless", pattern, 2, 30) == 0


def test_an_unknown_serving_mode_is_refused_not_priced_as_zero():
    with pytest.raises(ValueError, match="serving_mode"):
        cost.idle_usd_per_month("inference-component", G4DN_HOURLY, 1)


def test_cold_start_estimate_comes_from_aws_published_steps_and_is_not_measured_here():
    assert cost.SCALE_TO_ZERO_SOURCES["docs"].startswith(
        "https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-zero-instances.html"
    )
    assert cost.SCALE_TO_ZERO_SOURCES["blog"].startswith(
        "https://aws.amazon.com/blogs/machine-learning/unlock-cost-savings-with-the-new-scale-down-to-zero-"
        "feature-in-amazon-sagemaker-inference/"
    )
    assert "several minutes" in cost.SCALE_TO_ZERO_QUOTES["docs"]
    # The blog's measured steps (Llama3-8B, GPU): alarm ~1, instance ~1.75, model copy ~2.3, ~5 in all.
    assert cost.BLOG_COLD_START_MINUTES == {"alarm": 1.0, "instance": 1.75, "model_copy": 2.3}
    low, high = cost.COLD_START_MINUTES
    assert low == pytest.approx(2.75)  # alarm + instance: our copy cannot skip those
    assert high == pytest.approx(5.05)  # the whole measured scale-out, with a far larger model
    row = cost.stage_cost("dev", "inference_component", "ml.g4dn.xlarge", 1, 30, 1)
    assert "2.8-5.0 min (estimate, not measured here)" in cost.format_stage_table([row])


def test_dev_scaled_to_zero_idles_cheaper_than_dev_on_an_instance_by_the_instance_month():
    as_component = cost.stage_cost(
        "dev",
        "inference_component",
        "ml.g4dn.xlarge",
        min_instances=1,
        scale_to_zero_idle_minutes=30,
        lambda_provisioned_concurrency=1,
    )
    as_instance = cost.stage_cost(
        "dev",
        "instance",
        "ml.g4dn.xlarge",
        min_instances=1,
        scale_to_zero_idle_minutes=30,
        lambda_provisioned_concurrency=1,
    )
    # The Lambda's provisioned concurrency is billed idle in both; the difference is one g4dn month.
    lambda_unit = cost.lambda_provisioned_usd_per_month(1, 512)
    assert as_component["idle_usd_per_month"] == pytest.approx(lambda_unit)
    assert as_instance["idle_usd_per_month"] == pytest.approx(G4DN_HOURLY * 730 + lambda_unit)
    saving = as_instance["idle_usd_per_month"] - as_component["idle_usd_per_month"]
    assert saving == pytest.approx(537.572)  # the "about $540/month" dev paid to sit idle
    assert as_component["idle_episode"]["usd"] == pytest.approx(G4DN_HOURLY * 40 / 60)
    assert as_instance["idle_episode"] is None and as_instance["cold_start_minutes"] is None


def test_lambda_provisioned_concurrency_is_billed_whatever_the_traffic():
    # 2 units x 0.5 GB x 730 h x 3600 s x $0.0000033334 per GB-s.
    assert cost.lambda_provisioned_usd_per_month(2, 512) == pytest.approx(
        2 * 0.5 * cost.SECONDS_PER_MONTH * cost.LAMBDA_USD_PER_GB_SECOND_PROVISIONED
    )
    assert cost.lambda_cost(0.1)["provisioned_usd_per_month_per_unit"] == pytest.approx(
        cost.lambda_provisioned_usd_per_month(1, 512)
    )
    row = cost.stage_cost("prod", "instance", "ml.g4dn.xlarge", 2, 30, lambda_provisioned_concurrency=2)
    for entry in row["monthly"].values():
        assert entry["usd_per_month"] == pytest.approx(
            2 * G4DN_HOURLY * 730 + cost.lambda_provisioned_usd_per_month(2, 512)
        )


def test_a_usage_pattern_prices_instance_hours_plus_provisioned_concurrency():
    row = cost.stage_cost(
        "dev", "inference_component", "ml.g4dn.xlarge", 1, 30, 1, patterns=[EIGHT_HOUR_DAYS]
    )
    entry = row["monthly"][EIGHT_HOUR_DAYS.name]
    hours = 20 * (cost.COLD_START_MINUTES[1] / 60 + 8 + 40 / 60)
    assert entry["instance_hours"] == pytest.approx(hours)
    assert entry["usd_per_month"] == pytest.approx(
        hours * G4DN_HOURLY + cost.lambda_provisioned_usd_per_month(1)
    )


def test_a_serverless_stage_has_no_instance_price_and_says_compute_is_per_request():
    row = cost.stage_cost("dev", "serverless", "ml.g4dn.xlarge", 1, 30, 0)
    assert row["instance_type"] is None and row["idle_usd_per_month"] == 0
    assert "0 (0 h) + per request" in cost.format_stage_table([row])


def test_a_stage_on_an_unpriced_instance_type_is_refused():
    with pytest.raises(ValueError, match="no price"):
        cost.stage_cost("dev", "instance", "ml.p5.48xlarge", 1, 30, 1)


def test_the_stage_table_reads_cdk_json_through_the_stage_loader(monkeypatch):
    from stacks import model_environment

    configs = {
        "dev": cost_config("inference_component", min_instances=1, idle_minutes=45, provisioned=1),
        "prod": cost_config("instance", min_instances=2, idle_minutes=30, provisioned=2),
    }
    monkeypatch.setattr(model_environment, "stage_config_from_cdk_json", configs.__getitem__)
    rows = {row["stage"]: row for row in cost.stage_costs_from_cdk_json()}
    # A stage that scales to zero is shown next to itself on an always-on instance.
    assert list(rows) == ["dev", "dev if instance", "prod"]
    assert rows["dev"]["idle_episode"]["minutes"] == 55  # its own timeout, not a default
    assert rows["dev if instance"]["idle_usd_per_month"] == pytest.approx(
        G4DN_HOURLY * 730 + cost.lambda_provisioned_usd_per_month(1)
    )
    assert rows["prod"]["idle_instances"] == 2


def test_a_component_without_autoscaling_is_priced_as_one_instance_all_month(monkeypatch):
    from stacks import model_environment

    fixed = cost_config("inference_component", min_instances=1, idle_minutes=30, provisioned=0)
    fixed.autoscaling_enabled = False
    monkeypatch.setattr(model_environment, "stage_config_from_cdk_json", {"dev": fixed}.__getitem__)
    (row, _) = cost.stage_costs_from_cdk_json(stages=("dev",))
    assert row["stage"] == "dev (autoscaling off: one copy always on)"
    assert row["idle_instances"] == 1
    assert row["idle_usd_per_month"] == pytest.approx(G4DN_HOURLY * 730)


def cost_config(mode: str, min_instances: int, idle_minutes: int, provisioned: int):
    """The StageConfig fields the cost tool reads."""
    from types import SimpleNamespace

    return SimpleNamespace(
        serving_mode=mode,
        instance_type="ml.g4dn.xlarge",
        min_instances=min_instances,
        max_instances=min_instances + 1,
        scale_to_zero_idle_minutes=idle_minutes,
        lambda_provisioned_concurrency=provisioned,
        lambda_memory_mb=512,
        autoscaling_enabled=True,
    )


def test_cli_prints_each_stage_of_cdk_json(capsys):
    assert cost.main(["--stages"]) == 0
    out = capsys.readouterr().out
    assert "| stage | serving mode | instances while idle | idle all month |" in out
    assert "| prod | instance `ml.g4dn.xlarge` | 2 |" in out


def test_the_cost_section_prints_the_stage_rows_it_is_given():
    from bench import report

    rows = [
        cost.stage_cost("dev", "inference_component", "ml.g4dn.xlarge", 1, 30, 1),
        cost.stage_cost("dev if instance", "instance", "ml.g4dn.xlarge", 1, 30, 1),
    ]
    text = report.cost_section({"cost_error": "no measurements"}, stages=rows)
    assert "Not computed: no measurements." in text  # the measured part; the idle part needs none
    assert cost.format_stage_table(rows) in text
    assert (
        "**dev idle: $4.38/month in `inference_component` mode vs $541.95 in `instance` mode: $537.57 less**"
        in text
    )
    assert "dev 40 min, $0.49 per episode" in text
    assert "2.8-5.0 minutes from zero to the first answer, not measured here" in text
    assert cost.SCALE_TO_ZERO_SOURCES["docs"] in text and cost.SCALE_TO_ZERO_SOURCES["blog"] in text
