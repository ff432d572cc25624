"""Stage config: every bad or missing value fails with one line naming the key and what is allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
from botocore.retries.standard import ExponentialBackoff

from stacks.config import (
    CONFIG_KEYS,
    SAGEMAKER_INVOKE_LIMIT_SECONDS,
    ConfigError,
    config_field_names,
    load_stage_config,
)

from .conftest import REPO_ROOT, STAGE_DEFAULT, cdk_json_context, stage_context

GOOD_URL = "s3://example-bucket/model/model.tar.gz"
DEV_PACKAGE = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/dogbreed-dev/7"
PROD_PACKAGE = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/dogbreed-prod/4"


def load(stage: str = "dev", model_data_url: str | None = STAGE_DEFAULT, **overrides):
    context = stage_context(stage, model_data_url, **overrides)
    return load_stage_config(context.get)


def error_of(**kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        load(**kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_every_stage_in_cdk_json_is_valid(stage):
    config = load(stage)
    assert config.stage == stage
    assert config.endpoint_name == f"dogbreed-{stage}"
    assert config.model_package_group_name == f"dogbreed-{stage}"
    if config.model_from_package:
        assert config.model_package_arn.split("/")[1] == config.model_package_group_name
        assert config.model_data_url == ""
    else:
        assert (config.model_bucket, config.model_key) == ("example-bucket", "model/model.tar.gz")


def test_every_config_key_is_a_dataclass_field_and_documented():
    assert set(CONFIG_KEYS) == set(config_field_names())
    readme = (REPO_ROOT / "README.md").read_text()
    undocumented = [key for key in CONFIG_KEYS if f"`{key}`" not in readme]
    assert not undocumented, f"README.md does not document {undocumented}"


def test_prod_is_multi_az_and_autoscales_provisioned_concurrency():
    prod = load("prod")
    assert prod.production
    assert prod.min_instances >= 2
    assert prod.provisioned_concurrency_autoscaling


def test_config_is_frozen():
    config = load()
    with pytest.raises(AttributeError):
        config.min_instances = 5


@pytest.mark.parametrize(
    ("stage", "url", "expected"),
    [
        (None, GOOD_URL, "stage: missing; pass -c stage=NAME with NAME one of dev, prod"),
        ("qa", GOOD_URL, "stage: must be one of dev, prod (got 'qa')"),
        (
            "dev",
            None,
            "dogbreed:stages.dev.model_package_arn: missing; name the model: make promote STAGE=dev "
            "PACKAGE=ARN writes an approved package into cdk.json, or pass -c model_data_url=",
        ),
        ("dev", "https://example.com/model.tar.gz", "model_data_url: must be an s3://BUCKET/KEY.tar.gz URL"),
        (
            "dev",
            "s3://example-bucket/model/model.zip",
            "model_data_url: must be an s3://BUCKET/KEY.tar.gz URL",
        ),
        ("dev", "s3://example-bucket/", "model_data_url: must be an s3://BUCKET/KEY.tar.gz URL"),
        ("dev", "s3://Bad_Bucket/model.tar.gz", "model_data_url: must be an s3://BUCKET/KEY.tar.gz URL"),
        ("dev", GOOD_URL + "\n", "model_data_url: must be an s3://BUCKET/KEY.tar.gz URL"),
    ],
)
def test_stage_and_model_url_errors_name_the_key(stage, url, expected):
    context = stage_context("dev", url)
    if stage is None:
        del context["stage"]
    else:
        context["stage"] = stage
    with pytest.raises(ConfigError) as caught:
        load_stage_config(context.get)
    assert str(caught.value).startswith(expected)


BAD_VALUES = [
    ("production", "yes", "must be true or false"),
    ("log_retention_days", 10, "must be one of 1, 3, 5, 7, 14, 30"),
    ("checkpoint_expiration_days", 0, "must be an integer from 1 to 3650"),
    ("noncurrent_version_expiration_days", "30", "must be an integer from 1 to 3650"),
    ("access_log_expiration_days", 1.5, "must be an integer from 1 to 3650"),
    ("data_capture_expiration_days", True, "must be an integer from 1 to 3650"),
    ("training_image_tag", "latest", "must look like 2.6.0-gpu-py312"),
    ("training_host_enabled", 1, "must be true or false"),
    ("training_host_instance_type", "ml.g5.xlarge", "must look like g5.xlarge"),
    ("training_host_volume_gb", 20, "must be an integer from 100 to 2000"),
    ("training_host_ami_id", "ami-0123", "must look like ami-0123456789abcdef0"),
    ("training_log_group_owner", "yes", "must be true or false"),
    ("serving_mode", "async", "must be one of instance, serverless"),
    ("inference_image_tag", "2.6.0", "must look like 2.6.0-gpu-py312"),
    ("instance_type", "g4dn.xlarge", "must look like ml.g4dn.xlarge"),
    ("min_instances", 0, "must be an integer from 1 to 100"),
    ("max_instances", 101, "must be an integer from 1 to 100"),
    ("target_invocations_per_instance", 0, "must be an integer from 1 to 100000"),
    ("autoscaling_enabled", "yes", "must be true or false"),
    ("inference_workers", 0, "must be an integer from 1 to 64"),
    ("inference_threads_per_worker", "1", "must be an integer from 1 to 64"),
    ("scale_in_cooldown_seconds", -1, "must be an integer from 0 to 3600"),
    ("scale_out_cooldown_seconds", 7200, "must be an integer from 0 to 3600"),
    ("serverless_memory_mb", 1000, "must be one of 1024, 2048, 3072, 4096, 5120, 6144"),
    ("scale_to_zero_idle_minutes", 14, "must be an integer from 15 to 1440"),
    ("serverless_max_concurrency", 201, "must be an integer from 1 to 200"),
    # At most SageMaker's 60 s invocation limit less the margin the caller's read timeout needs above it.
    ("model_server_timeout_seconds", 59, "must be an integer from 1 to 58"),
    ("data_capture_enabled", "false", "must be true or false"),
    ("data_capture_sampling_percent", 0, "must be an integer from 1 to 100"),
    ("traffic_routing", "LINEAR", "must be one of ALL_AT_ONCE, CANARY"),
    ("canary_percent", 60, "must be an integer from 1 to 50"),
    ("baking_period_seconds", 4000, "must be an integer from 0 to 3600"),
    ("alarm_latency_p99_ms", 0, "must be an integer from 1 to 60000"),
    ("alarm_5xx_errors", 0, "must be an integer from 1 to 100000"),
    ("alarm_4xx_rate_percent", 101, "must be an integer from 1 to 100"),
    ("alarm_email", "not-an-email", "must look like ops@example.com"),
    ("alarm_topic_arn", "arn:aws:sns:eu-west-1:1234:ops", "must look like arn:aws:sns:"),
    ("lambda_memory_mb", 64, "must be an integer from 128 to 10240"),
    ("lambda_reserved_concurrency", 0, "must be an integer from 1 to 1000"),
    ("lambda_provisioned_concurrency", -1, "must be an integer from 0 to 1000"),
    ("lambda_provisioned_concurrency_max", 1001, "must be an integer from 0 to 1000"),
    ("lambda_provisioned_utilization_target", 0.95, "must be a number from 0.1 to 0.9"),
    ("endpoint_connect_timeout_seconds", 0, "must be an integer from 1 to 10"),
    ("endpoint_read_timeout_seconds", SAGEMAKER_INVOKE_LIMIT_SECONDS + 1, "must be an integer from 3 to 60"),
    # A model server timeout of at least 1 s, plus the margin.
    ("endpoint_read_timeout_seconds", 2, "must be an integer from 3 to 60"),
    ("endpoint_max_attempts", 6, "must be an integer from 1 to 5"),
    ("max_image_bytes", 6_000_000, "must be an integer from 1024 to 4000000"),
    ("front_door_enabled", "true", "must be true or false"),
    # WAF's rate-based rules count from 10 requests per window.
    ("front_door_rate_limit", 9, "must be an integer from 10 to 2000000000"),
    ("front_door_domain_name", "https://dogs.example.com", "must look like dogs.example.com"),
    # CloudFront takes viewer certificates from us-east-1 only.
    (
        "front_door_certificate_arn",
        "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
        "must look like arn:aws:acm:us-east-1:123456789012:certificate/<uuid>",
    ),
    # An unversioned package (no /N): what a Marketplace listing has, not a version of a group.
    (
        "model_package_arn",
        "arn:aws:sagemaker:us-east-1:123456789012:model-package/dogbreed-dev",
        "must look like a versioned model package ARN, "
        "arn:aws:sagemaker:us-east-1:123456789012:model-package/dogbreed-prod/3",
    ),
]


def test_bad_values_cover_every_key():
    assert {key for key, _, _ in BAD_VALUES} == set(CONFIG_KEYS)


@pytest.mark.parametrize(("key", "value", "allowed"), BAD_VALUES, ids=[key for key, _, _ in BAD_VALUES])
def test_each_bad_value_gives_one_line_naming_key_and_allowed_values(key, value, allowed):
    message = error_of(**{key: value})
    assert message.startswith(f"dogbreed:stages.dev.{key}: {allowed}")
    assert repr(value) in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("instance_type", "ml.g4dn.xlarge\n"),
        ("inference_image_tag", "2.6.0-gpu-py312\n"),
        ("training_host_instance_type", "g5.xlarge\n"),
    ],
)
def test_a_trailing_newline_is_not_a_valid_name(key, value):
    assert error_of(**{key: value}).startswith(f"dogbreed:stages.dev.{key}: must look like")


def test_missing_key_is_reported_with_where_to_set_it():
    context = stage_context("dev")
    del context["dogbreed:defaults"]["min_instances"]
    with pytest.raises(ConfigError, match=r"^dogbreed:stages\.dev\.min_instances: missing; set it in"):
        load_stage_config(context.get)


def test_unknown_key_is_rejected_so_typos_do_not_pass_silently():
    assert error_of(min_instance=2).startswith("dogbreed:stages.dev.min_instance: unknown key")


@pytest.mark.parametrize(
    ("stage", "overrides", "expected"),
    [
        (
            "prod",
            {"min_instances": 1},
            "dogbreed:stages.prod.min_instances: must be >= 2 in a production stage",
        ),
        ("prod", {"production": False}, "dogbreed:stages.prod.production: must be true for the prod stage"),
        (
            "dev",
            {"min_instances": 3, "max_instances": 2},
            "dogbreed:stages.dev.max_instances: must be >= min",
        ),
        (
            "dev",
            {"serving_mode": "serverless"},
            "dogbreed:stages.dev.inference_image_tag: must be a -cpu- image for serving_mode=serverless",
        ),
        (
            "dev",
            {"serving_mode": "instance", "instance_type": "ml.m5.xlarge"},
            "dogbreed:stages.dev.inference_image_tag: must be a -cpu- image for serving_mode=instance",
        ),
        (
            "dev",
            {"inference_image_tag": "2.6.0-cpu-py312"},
            "dogbreed:stages.dev.inference_image_tag: must be a -gpu- image",
        ),
        (
            "dev",
            {
                "serving_mode": "serverless",
                "inference_image_tag": "2.6.0-cpu-py312",
                "data_capture_enabled": True,
            },
            "dogbreed:stages.dev.data_capture_enabled: must be false when serving_mode is serverless",
        ),
        (
            "dev",
            {
                "serving_mode": "serverless",
                "inference_image_tag": "2.6.0-cpu-py312",
                "traffic_routing": "CANARY",
            },
            "dogbreed:stages.dev.traffic_routing: must be ALL_AT_ONCE when serving_mode is serverless",
        ),
        (
            "dev",
            {"serving_mode": "instance", "traffic_routing": "CANARY", "min_instances": 1},
            "dogbreed:stages.dev.traffic_routing: must be ALL_AT_ONCE when min_instances is 1",
        ),
        (
            "dev",
            {"traffic_routing": "CANARY", "min_instances": 2},
            "dogbreed:stages.dev.traffic_routing: must be ALL_AT_ONCE when serving_mode is "
            "inference_component",
        ),
        (
            "dev",
            {"data_capture_enabled": True},
            "dogbreed:stages.dev.data_capture_enabled: must be false when serving_mode is "
            "inference_component",
        ),
        (
            "dev",
            {"instance_type": "ml.p3.2xlarge"},
            "dogbreed:stages.dev.instance_type: serving_mode inference_component needs the vCPUs, memory and "
            "GPUs of the instance type",
        ),
        (
            "prod",
            {
                "serving_mode": "inference_component",
                "data_capture_enabled": False,
                "traffic_routing": "ALL_AT_ONCE",
            },
            "dogbreed:stages.prod.serving_mode: must be instance in a production stage, which keeps at least "
            "two instances running",
        ),
        (
            "prod",
            {
                "serving_mode": "serverless",
                "inference_image_tag": "2.6.0-cpu-py312",
                "traffic_routing": "ALL_AT_ONCE",
            },
            "dogbreed:stages.prod.serving_mode: must be instance in a production stage",
        ),
        (
            "dev",
            {"lambda_provisioned_concurrency": 5, "lambda_provisioned_concurrency_max": 2},
            "dogbreed:stages.dev.lambda_provisioned_concurrency_max: must be >= "
            "lambda_provisioned_concurrency",
        ),
        (
            "dev",
            {"lambda_reserved_concurrency": 10, "lambda_provisioned_concurrency_max": 11},
            "dogbreed:stages.dev.lambda_provisioned_concurrency_max: must be <= lambda_reserved_concurrency",
        ),
        (
            "prod",
            {"lambda_provisioned_concurrency": 5, "lambda_provisioned_concurrency_max": 5},
            "dogbreed:stages.prod.lambda_provisioned_concurrency_max: must be > "
            "lambda_provisioned_concurrency",
        ),
    ],
)
def test_rules_across_keys(stage, overrides, expected):
    assert error_of(stage=stage, **overrides).startswith(expected)


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_lambda_outlives_every_endpoint_attempt(stage):
    config = load(stage)
    worst_endpoint_wait = config.endpoint_max_attempts * (
        config.endpoint_connect_timeout_seconds + config.endpoint_read_timeout_seconds
    )
    assert config.lambda_timeout_seconds > worst_endpoint_wait
    assert config.endpoint_read_timeout_seconds <= SAGEMAKER_INVOKE_LIMIT_SECONDS


def _botocore_worst_sleeps(attempts: int) -> float:
    """botocore's own standard-mode backoff at its longest: full jitter draw, throttling base, and an
    x-amz-retry-after header asking for far more than it allows."""
    backoff = ExponentialBackoff(
        random=lambda: 1.0,
        throttling_detector=SimpleNamespace(is_throttling_error_from_context=lambda context: True),
    )
    response = SimpleNamespace(headers={"x-amz-retry-after": "3600000"})
    return sum(
        backoff.delay_amount(SimpleNamespace(attempt_number=n, http_response=response))
        for n in range(1, attempts)
    )


@pytest.mark.parametrize("attempts", [1, 2, 3, 4, 5])
def test_lambda_timeout_covers_botocores_longest_backoff(attempts):
    config = load(
        endpoint_connect_timeout_seconds=2,
        endpoint_read_timeout_seconds=10,
        model_server_timeout_seconds=8,
        endpoint_max_attempts=attempts,
    )
    worst = attempts * 12 + _botocore_worst_sleeps(attempts)
    assert worst < config.lambda_timeout_seconds <= worst + 4  # covered, and not padded beyond the margin


def test_local_nvme_instances_are_recognised():
    assert load(serving_mode="instance", instance_type="ml.g4dn.xlarge").instance_has_local_nvme
    assert load(serving_mode="instance", instance_type="ml.g5.2xlarge").instance_has_local_nvme
    assert not load(serving_mode="instance", instance_type="ml.p3.2xlarge").instance_has_local_nvme
    # A KmsKeyId on these fails CreateEndpointConfig; leaving it off an EBS-only type (inf2) would
    # skip the customer key and acknowledge the nag finding with a false reason.
    assert load(serving_mode="instance", instance_type="ml.p5e.48xlarge").instance_has_local_nvme
    assert load(serving_mode="instance", instance_type="ml.p5en.48xlarge").instance_has_local_nvme
    cpu = "2.6.0-cpu-py312"
    assert load(
        serving_mode="instance", instance_type="ml.trn1.2xlarge", inference_image_tag=cpu
    ).instance_has_local_nvme
    assert not load(
        serving_mode="instance", instance_type="ml.inf2.xlarge", inference_image_tag=cpu
    ).instance_has_local_nvme
    assert not load(
        serving_mode="instance", instance_type="ml.m5.xlarge", inference_image_tag="2.6.0-cpu-py312"
    ).instance_has_local_nvme


def test_app_prints_one_line_and_exits_1_on_a_bad_value():
    context = cdk_json_context()
    context.update(stage="prod", model_package_arn=PROD_PACKAGE, alarm_email="oncall@example.org")
    context["dogbreed:stages"]["prod"]["min_instances"] = 1
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": "/nonexistent-never-written"}
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "config error: dogbreed:stages.prod.min_instances: must be >= 2 in a production stage, "
        "so the endpoint spans two Availability Zones (got 1)"
    ]


# --- which model a stage serves: exactly one of cdk.json's model_package_arn and -c model_data_url -------


def test_a_stage_serves_the_package_cdk_json_names():
    config = load("dev", model_data_url=None, model_package_arn=DEV_PACKAGE)
    assert config.model_from_package
    assert (config.model_package_region, config.model_package_account) == ("eu-west-1", "123456789012")
    assert config.model_data_url == ""


def test_a_stage_may_serve_an_experiments_artifact_by_url():
    config = load("dev", model_data_url=GOOD_URL)
    assert not config.model_from_package
    assert config.model_package_arn == ""


def test_both_a_package_and_a_url_is_one_error_naming_the_url():
    message = error_of(stage="dev", model_data_url=GOOD_URL, model_package_arn=DEV_PACKAGE)
    assert message.startswith(
        "model_data_url: give -c model_data_url or dogbreed:stages.dev.model_package_arn, not both"
    )


def test_neither_a_package_nor_a_url_says_how_to_name_the_model():
    message = error_of(stage="dev", model_data_url=None)
    assert message.startswith("dogbreed:stages.dev.model_package_arn: missing; name the model: make promote")


def test_production_serves_only_a_registered_package():
    message = error_of(stage="prod", model_data_url=GOOD_URL)
    assert message.startswith(
        "dogbreed:stages.prod.model_package_arn: a production stage serves only a registered model package"
    )


def test_a_package_of_another_stages_group_is_refused():
    # A dev model was never approved for prod: prod serves only versions of its own group.
    message = error_of(stage="prod", model_data_url=None, model_package_arn=DEV_PACKAGE)
    assert message == (
        "dogbreed:stages.prod.model_package_arn: must be a version of this stage's model package group "
        "dogbreed-prod (got group 'dogbreed-dev')"
    )


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sagemaker:us-east-1:123456789012:model-package/dogbreed-dev/0",
        "arn:aws:sagemaker:us-east-1:123456789012:model-package-group/dogbreed-dev",
        "arn:aws:sagemaker:us-east-1:1234:model-package/dogbreed-dev/1",
        "arn:aws:sns:us-east-1:123456789012:model-package/dogbreed-dev/1",
        "arn:aws:sagemaker:us-east-1:123456789012:model-package/dogbreed-dev/1\n",
        "arn:aws:sagemaker:us-east-1:123456789012:model-package/-dogbreed/1",
    ],
)
def test_a_malformed_package_arn_is_one_line_naming_the_key(arn):
    message = error_of(stage="dev", model_data_url=None, model_package_arn=arn)
    assert message.startswith(
        "dogbreed:stages.dev.model_package_arn: must look like a versioned model package"
    )


def test_a_command_line_package_is_named_as_such_in_errors():
    context = stage_context("prod", None)
    context["model_package_arn"] = DEV_PACKAGE
    with pytest.raises(ConfigError) as caught:
        load_stage_config(context.get)
    assert str(caught.value).startswith("-c model_package_arn: must be a version of this stage's model")


def test_the_command_line_cannot_override_a_committed_package():
    """Promotion is the reviewed cdk.json change: -c model_package_arn stands in only where none is
    committed."""
    context = stage_context("prod", None, model_package_arn=PROD_PACKAGE)
    context["model_package_arn"] = PROD_PACKAGE.replace("/4", "/5")
    with pytest.raises(ConfigError) as caught:
        load_stage_config(context.get)
    assert str(caught.value).startswith(
        "-c model_package_arn: not allowed while dogbreed:stages.prod.model_package_arn names the stage's "
        f"package ({PROD_PACKAGE}); promote another with make promote STAGE=prod"
    )
    context["model_package_arn"] = PROD_PACKAGE  # the same one: nothing overridden
    assert load_stage_config(context.get).model_package_arn == PROD_PACKAGE


def test_a_production_stage_without_a_package_is_not_offered_a_url():
    message = error_of(stage="prod", model_data_url=None)
    assert message.startswith("dogbreed:stages.prod.model_package_arn: missing; name the model: make promote")
    assert "model_data_url" not in message


# --- front door ------------------------------------------------------------------------------------------

CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"


def test_the_front_door_is_off_in_dev_and_on_in_prod():
    assert load("dev").front_door_enabled is False
    assert load("prod").front_door_enabled is True


def test_a_domain_name_needs_its_certificate_and_the_other_way_round():
    assert error_of(front_door_enabled=True, front_door_domain_name="dogs.example.com").startswith(
        "dogbreed:stages.dev.front_door_certificate_arn: front_door_domain_name and "
        "front_door_certificate_arn go together"
    )
    assert error_of(front_door_enabled=True, front_door_certificate_arn=CERTIFICATE).startswith(
        "dogbreed:stages.dev.front_door_domain_name: front_door_domain_name and front_door_certificate_arn"
    )
    config = load(front_door_enabled=True, front_door_domain_name="dogs.example.com",
                  front_door_certificate_arn=CERTIFICATE)  # fmt: skip
    assert config.front_door_domain_name == "dogs.example.com"


def test_a_domain_name_without_a_front_door_is_a_mistake_not_ignored():
    message = error_of(front_door_domain_name="dogs.example.com", front_door_certificate_arn=CERTIFICATE)
    assert message.startswith("dogbreed:stages.dev.front_door_domain_name: set only with front_door_enabled")


def test_a_front_door_needs_a_lambda_timeout_cloudfront_can_wait_for():
    """CloudFront waits at most 60 s for the origin; a longer Lambda timeout would turn the handler's 504
    into CloudFront's error page."""
    message = error_of(stage="prod", endpoint_read_timeout_seconds=20)
    assert message.startswith(
        "dogbreed:stages.prod.endpoint_read_timeout_seconds: with front_door_enabled the Lambda's timeout"
    )
    assert "60 s origin timeout" in message and "(got 20)" in message
    assert (
        load("prod", endpoint_read_timeout_seconds=20, front_door_enabled=False).lambda_timeout_seconds > 60
    )


def test_only_an_inference_component_stage_names_the_component_it_serves():
    assert load("dev").served_component_name == "dogbreed-dev-model"
    assert load("prod").served_component_name is None  # the endpoint's production variant
