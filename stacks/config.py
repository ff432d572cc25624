"""The one typed, validated configuration of a stage.

Everything a stack may vary comes from here: ``cdk.json`` holds ``dogbreed:defaults`` and per-stage
overrides under ``dogbreed:stages``; ``-c stage=NAME`` picks the stage. The model comes from exactly one of
the stage's ``model_package_arn`` (a versioned package of the stage's model package group: the committed,
reviewed way, and the only one a production stage accepts) and ``-c model_data_url=s3://...`` (an
experiment's artifact). ``load_stage_config`` merges, validates and returns a frozen ``StageConfig``;
any bad or missing value raises ``ConfigError`` with one line naming the key and what is allowed.
Stacks receive the dataclass, never raw context.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from stacks.instance_storage import has_local_nvme
from stacks.instance_types import INSTANCE_SPECS

DEFAULTS_CONTEXT_KEY = "dogbreed:defaults"
STAGES_CONTEXT_KEY = "dogbreed:stages"
PROJECT = "dogbreed"

# The log group every SageMaker training job of an account and region writes to; one stage's training
# stack declares it (training_log_group_owner), `make preflight` checks it exists for the others.
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# SageMaker real-time InvokeEndpoint gives the container at most 60 s to answer
# (https://docs.aws.amazon.com/sagemaker/latest/dg/realtime-endpoints-test-endpoints.html).
SAGEMAKER_INVOKE_LIMIT_SECONDS = 60
# Lambda's synchronous payload limit is 6 MB and a Function URL body arrives base64-encoded (4/3 larger);
# serverless endpoints accept at most 4 MB per request. 4,000,000 raw bytes fits both.
MAX_IMAGE_BYTES_LIMIT = 4_000_000
# The model server (TorchServe) gives up at least this much before the Lambda's read timeout: the server
# then answers the request itself (a 5xx the handler maps) instead of the client timing out on a worker
# that is still busy with it. TorchServe's timeout has whole-second resolution and starts when a worker
# takes the request, so the margin covers the front's and the network's share.
MODEL_SERVER_TIMEOUT_MARGIN_SECONDS = 2
# Seconds added to the worst-case endpoint wait for the handler's own work (decode, validate, respond).
LAMBDA_TIMEOUT_MARGIN_SECONDS = 3
# botocore "standard" retry mode (botocore.retries.standard.ExponentialBackoff) sleeps up to
# min(2 ** (n - 1), 20) s before retry n (1 s base for throttling, 50 ms otherwise), and an
# x-amz-retry-after header may stretch one sleep by up to 5 s more.
BOTOCORE_MAX_BACKOFF_SECONDS = 20
BOTOCORE_RETRY_AFTER_EXTRA_SECONDS = 5

# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
# fmt: off
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)
# fmt: on
# instance: real-time instances, always on. serverless: Serverless Inference (CPU). inference_component:
# the model as an inference component on an endpoint whose instances scale to zero while it is idle.
SERVING_MODES = ("instance", "serverless", "inference_component")
TRAFFIC_ROUTING_TYPES = ("ALL_AT_ONCE", "CANARY")
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9]{1,11}$")
_IMAGE_TAG = re.compile(r"^\d+\.\d+(\.\d+)?-(gpu|cpu)-py3\d+(-[a-z0-9.\-]+)?$")
_ML_INSTANCE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_EC2_INSTANCE = re.compile(r"^[a-z][a-z0-9]*\.[a-z0-9]+$")
_AMI_ID = re.compile(r"^$|^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
# AWS's public parameter with the newest x86_64 PyTorch Deep Learning AMI (OSS NVIDIA driver, Ubuntu 24.04).
# Read once, by hand, to pin training_host_ami_id: resolved at deploy time it changes with every DLAMI
# release, and a new ImageId replaces the training host and deletes its volume mid-run.
DLAMI_PARAMETER = (
    "/aws/service/deeplearning/ami/x86_64/oss-nvidia-driver-gpu-pytorch-2.9-ubuntu-24.04/latest/ami-id"
)
_EMAIL = re.compile(r"^$|^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
# A standard (not FIFO) SNS topic: CloudWatch alarm actions cannot publish to FIFO topics.
_TOPIC_ARN = re.compile(r"^$|^arn:aws[a-z-]*:sns:[a-z]{2}(-[a-z]+)+-\d:\d{12}:[A-Za-z0-9_-]{1,256}$")
# CloudFront's scope lives in us-east-1: a web ACL for a distribution, its logs, its metrics and their
# alarms, and a viewer certificate (https://docs.aws.amazon.com/waf/latest/developerguide/how-aws-waf-works-resources.html).
CLOUDFRONT_REGION = "us-east-1"
# A viewer certificate in ACM, which CloudFront accepts only from us-east-1.
_CERTIFICATE_ARN = re.compile(r"^$|^arn:aws[a-z-]*:acm:us-east-1:\d{12}:certificate/[0-9a-f-]{36}$")
# A DNS name CloudFront can serve (an alternate domain name): labels of letters, digits and hyphens.
_DOMAIN_NAME = re.compile(r"^$|^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
# WAF rate-based rules count at least 10 and at most 2,000,000,000 requests per evaluation window
# (https://docs.aws.amazon.com/waf/latest/APIReference/API_RateBasedStatement.html).
WAF_RATE_LIMIT_RANGE = (10, 2_000_000_000)
# Regions not enabled by default in an account (https://docs.aws.amazon.com/sns/latest/dg/sns-cross-region-delivery.html):
# SNS delivers from us-east-1 to a Lambda function in none of them
# (https://docs.aws.amazon.com/sns/latest/dg/lambda-prereq.html), which the front door's alarms need.
OPT_IN_REGIONS = (
    "af-south-1", "ap-east-1", "ap-south-2", "ap-southeast-3", "ap-southeast-4", "ap-northeast-3",
    "eu-south-1", "eu-south-2", "eu-central-2", "il-central-1", "me-south-1", "me-central-1",
)  # fmt: skip
# CloudFront waits at most 60 s for an origin's answer unless a quota increase allows more
# (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/DownloadDistValuesOrigin.html#DownloadDistValuesOriginResponseTimeout);
# the front door waits the Lambda's timeout plus this margin, so the handler's own answer always arrives.
CLOUDFRONT_ORIGIN_READ_TIMEOUT_LIMIT_SECONDS = 60
ORIGIN_READ_MARGIN_SECONDS = 1
# Keys a command line may set over cdk.json (-c KEY=VALUE), besides stage and model_data_url: where alarms
# go and which package a production stage serves are what a synth without committed values (CI, a fork)
# has to supply. A deploy of a production stage still checks that the package is Approved (ModelPackageCheck).
COMMAND_LINE_KEYS = ("alarm_email", "alarm_topic_arn", "model_package_arn")
# An artifact: s3://BUCKET/KEY.tar.gz (training.register checks URLs with it too).
MODEL_URL = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(?P<key>[^\s]+\.tar\.gz)$")
# A versioned model package (one version of a model package group); an unversioned package (Marketplace)
# has no /N. Group names: 1-63 of [a-zA-Z0-9-], no leading hyphen (CreateModelPackageGroup).
_PACKAGE_ARN = re.compile(
    r"^$|^arn:aws[a-z-]*:sagemaker:(?P<region>[a-z]{2}(-[a-z]+)+-\d):(?P<account>\d{12}):model-package/"
    r"(?P<group>[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62})/(?P<version>[1-9]\d{0,8})$"
)
EXAMPLE_PACKAGE_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/dogbreed-prod/3"


class ConfigError(ValueError):
    """A configuration value is missing or not allowed; the message is one line for the user."""


@dataclass(frozen=True)
class StageConfig:
    """Everything that differs between stages. Field docs are in README.md, section Configuration."""

    stage: str
    # Exactly one of the two names the model: "" for the other.
    model_data_url: str
    model_package_arn: str
    production: bool
    log_retention_days: int
    # storage
    checkpoint_expiration_days: int
    noncurrent_version_expiration_days: int
    access_log_expiration_days: int
    data_capture_expiration_days: int
    # training
    training_image_tag: str
    training_host_enabled: bool
    training_host_instance_type: str
    training_host_volume_gb: int
    training_host_ami_id: str
    # One stage per account and region declares /aws/sagemaker/TrainingJobs, which every stage's jobs share.
    training_log_group_owner: bool
    # serving
    serving_mode: str
    inference_image_tag: str
    instance_type: str
    min_instances: int
    max_instances: int
    autoscaling_enabled: bool
    # Derived by `make bench` (docs/benchmarks.json, "stages"); tests/bench checks cdk.json against it.
    target_invocations_per_instance: int
    inference_workers: int
    inference_threads_per_worker: int
    scale_in_cooldown_seconds: int
    scale_out_cooldown_seconds: int
    serverless_memory_mb: int
    serverless_max_concurrency: int
    # inference_component mode: minutes without an invocation before the copies (then the instances) go.
    scale_to_zero_idle_minutes: int
    # A property of the Model (its container environment), so it is a key of its own: deriving it from the
    # Lambda's read timeout would make a Lambda-only change replace the Model and start a GPU blue/green.
    model_server_timeout_seconds: int
    data_capture_enabled: bool
    data_capture_sampling_percent: int
    traffic_routing: str
    canary_percent: int
    baking_period_seconds: int
    alarm_latency_p99_ms: int
    alarm_5xx_errors: int
    alarm_4xx_rate_percent: int
    alarm_email: str
    alarm_topic_arn: str
    # api
    lambda_memory_mb: int
    lambda_reserved_concurrency: int
    lambda_provisioned_concurrency: int
    lambda_provisioned_concurrency_max: int
    lambda_provisioned_utilization_target: float
    endpoint_connect_timeout_seconds: int
    endpoint_read_timeout_seconds: int
    endpoint_max_attempts: int
    max_image_bytes: int
    # front door (CloudFront + WAF + the web page)
    front_door_enabled: bool
    # Requests to the API per client IP per 5 minutes before WAF answers 429.
    front_door_rate_limit: int
    # Optional alternate domain name and its us-east-1 ACM certificate: "" for the distribution's own
    # *.cloudfront.net name (whose certificate CloudFront serves with TLSv1 as the lowest version).
    front_door_domain_name: str
    front_door_certificate_arn: str

    @property
    def endpoint_name(self) -> str:
        """Fixed per stage, so retraining updates the same endpoint and the Lambda never changes."""
        return f"{PROJECT}-{self.stage}"

    @property
    def stack_prefix(self) -> str:
        return f"{PROJECT}-{self.stage}"

    @property
    def model_package_group_name(self) -> str:
        return model_package_group_name(self.stage)

    @property
    def model_approval_rule_name(self) -> str:
        return f"{self.endpoint_name}-model-approvals"

    @property
    def model_source_id(self) -> str:
        """A short digest of what names the model, for logical ids that must change with it."""
        return (
            hashlib.sha256((self.model_package_arn or self.model_data_url).encode()).hexdigest()[:8].upper()
        )

    @property
    def model_from_package(self) -> bool:
        return bool(self.model_package_arn)

    @property
    def model_package_region(self) -> str:
        return _PACKAGE_ARN.match(self.model_package_arn)["region"]

    @property
    def model_package_account(self) -> str:
        return _PACKAGE_ARN.match(self.model_package_arn)["account"]

    @property
    def model_bucket(self) -> str:
        return MODEL_URL.match(self.model_data_url)["bucket"]

    @property
    def model_key(self) -> str:
        return MODEL_URL.match(self.model_data_url)["key"]

    @property
    def is_serverless(self) -> bool:
        return self.serving_mode == "serverless"

    @property
    def is_inference_component(self) -> bool:
        return self.serving_mode == "inference_component"

    @property
    def inference_component_name(self) -> str:
        """Fixed: the scalable target and the Lambda name it, and CloudFormation returns no name attribute."""
        return f"{self.endpoint_name}-model"

    @property
    def served_component_name(self) -> str | None:
        """The inference component the stage serves its model as, or None (the endpoint's variant)."""
        return self.inference_component_name if self.is_inference_component else None

    @property
    def instance_has_local_nvme(self) -> bool:
        return has_local_nvme(self.instance_type)

    @property
    def provisioned_concurrency_autoscaling(self) -> bool:
        return self.lambda_provisioned_concurrency_max > self.lambda_provisioned_concurrency

    @property
    def alarm_topic_name(self) -> str:
        return f"{self.endpoint_name}-alarms"

    @property
    def front_door_web_acl_name(self) -> str:
        return f"{self.endpoint_name}-front-door"

    @property
    def edge_alarm_topic_name(self) -> str:
        return f"{self.endpoint_name}-edge-alarms"

    @property
    def lambda_timeout_seconds(self) -> int:
        """Worst case of the handler's endpoint call, plus a margin.

        Each of ``endpoint_max_attempts`` attempts may wait ``connect + read`` seconds, and botocore's
        standard mode sleeps up to min(2 ** (n - 1), 20) + 5 s before retry n; the Lambda must outlive
        all of it, or the caller gets a Lambda timeout instead of the handler's 504.
        """
        attempts = self.endpoint_max_attempts
        per_attempt = self.endpoint_connect_timeout_seconds + self.endpoint_read_timeout_seconds
        backoff = sum(
            min(2 ** (n - 1), BOTOCORE_MAX_BACKOFF_SECONDS) + BOTOCORE_RETRY_AFTER_EXTRA_SECONDS
            for n in range(1, attempts)
        )
        return math.ceil(attempts * per_attempt + backoff + LAMBDA_TIMEOUT_MARGIN_SECONDS)


def model_package_group_name(stage: str) -> str:
    """The stage's model registry group: every model trained for the stage registers a version here."""
    return f"{PROJECT}-{stage}"


def committed_stage_values(context: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """A stage's cdk.json values (defaults, then the stage's overrides), unchecked and without -c keys."""
    return {**context.get(DEFAULTS_CONTEXT_KEY, {}), **context.get(STAGES_CONTEXT_KEY, {}).get(stage, {})}


# --- validation ------------------------------------------------------------------------------------------

Check = Callable[[str, Any], Any]


def _int(low: int, high: int) -> Check:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{key}: must be an integer from {low} to {high} (got {value!r})")
        return value

    return check


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: must be true or false (got {value!r})")
    return value


def _choice(choices: tuple) -> Check:
    def check(key: str, value: Any) -> Any:
        if value not in choices or isinstance(value, bool):
            allowed = ", ".join(str(c) for c in choices)
            raise ConfigError(f"{key}: must be one of {allowed} (got {value!r})")
        return value

    return check


def _pattern(regex: re.Pattern, example: str) -> Check:
    def check(key: str, value: Any) -> str:
        # fullmatch: with match, "$" also accepts a trailing newline, which the API calls then reject.
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise ConfigError(f"{key}: must look like {example} (got {value!r})")
        return value

    return check


def _fraction(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.1 <= value <= 0.9:
        raise ConfigError(f"{key}: must be a number from 0.1 to 0.9 (got {value!r})")
    return float(value)


_CHECKS: dict[str, Check] = {
    "production": _bool,
    "log_retention_days": _choice(LOG_RETENTION_DAYS),
    "checkpoint_expiration_days": _int(1, 3650),
    "noncurrent_version_expiration_days": _int(1, 3650),
    "access_log_expiration_days": _int(1, 3650),
    "data_capture_expiration_days": _int(1, 3650),
    "training_image_tag": _pattern(_IMAGE_TAG, "2.6.0-gpu-py312"),
    "training_host_enabled": _bool,
    "training_host_instance_type": _pattern(_EC2_INSTANCE, "g5.xlarge"),
    "training_host_volume_gb": _int(100, 2000),
    "training_host_ami_id": _pattern(_AMI_ID, 'ami-0123456789abcdef0, or "" without training_host_enabled'),
    "training_log_group_owner": _bool,
    "serving_mode": _choice(SERVING_MODES),
    "inference_image_tag": _pattern(_IMAGE_TAG, "2.6.0-gpu-py312"),
    "instance_type": _pattern(_ML_INSTANCE, "ml.g4dn.xlarge"),
    "min_instances": _int(1, 100),
    "max_instances": _int(1, 100),
    "autoscaling_enabled": _bool,
    "target_invocations_per_instance": _int(1, 100_000),
    "inference_workers": _int(1, 64),
    "inference_threads_per_worker": _int(1, 64),
    "scale_in_cooldown_seconds": _int(0, 3600),
    "scale_out_cooldown_seconds": _int(0, 3600),
    "serverless_memory_mb": _choice(SERVERLESS_MEMORY_MB),
    "serverless_max_concurrency": _int(1, 200),
    # At least 15: a cold start takes minutes (about 5 by AWS's blog, over 9 in a third-party measurement),
    # and an idle period shorter than that would stop a copy a caller that does not retry started. At most
    # a day: a CloudWatch alarm evaluates at most 1440 one-minute periods.
    "scale_to_zero_idle_minutes": _int(15, 1440),
    "model_server_timeout_seconds": _int(
        1, SAGEMAKER_INVOKE_LIMIT_SECONDS - MODEL_SERVER_TIMEOUT_MARGIN_SECONDS
    ),
    "data_capture_enabled": _bool,
    "data_capture_sampling_percent": _int(1, 100),
    "traffic_routing": _choice(TRAFFIC_ROUTING_TYPES),
    "canary_percent": _int(1, 50),
    "baking_period_seconds": _int(0, 3600),
    "alarm_latency_p99_ms": _int(1, SAGEMAKER_INVOKE_LIMIT_SECONDS * 1000),
    "alarm_5xx_errors": _int(1, 100_000),
    "alarm_4xx_rate_percent": _int(1, 100),
    "alarm_email": _pattern(_EMAIL, 'ops@example.com, or "" for no subscription'),
    "alarm_topic_arn": _pattern(_TOPIC_ARN, 'arn:aws:sns:us-east-1:123456789012:ops-alarms, or "" for none'),
    "model_package_arn": _pattern(
        _PACKAGE_ARN, f'a versioned model package ARN, {EXAMPLE_PACKAGE_ARN} (or "" with -c model_data_url)'
    ),
    "lambda_memory_mb": _int(128, 10240),
    "lambda_reserved_concurrency": _int(1, 1000),
    "lambda_provisioned_concurrency": _int(0, 1000),
    "lambda_provisioned_concurrency_max": _int(0, 1000),
    "lambda_provisioned_utilization_target": _fraction,
    "endpoint_connect_timeout_seconds": _int(1, 10),
    "endpoint_read_timeout_seconds": _int(
        MODEL_SERVER_TIMEOUT_MARGIN_SECONDS + 1, SAGEMAKER_INVOKE_LIMIT_SECONDS
    ),
    "endpoint_max_attempts": _int(1, 5),
    "max_image_bytes": _int(1024, MAX_IMAGE_BYTES_LIMIT),
    "front_door_enabled": _bool,
    "front_door_rate_limit": _int(*WAF_RATE_LIMIT_RANGE),
    "front_door_domain_name": _pattern(_DOMAIN_NAME, 'dogs.example.com, or "" for the *.cloudfront.net name'),
    "front_door_certificate_arn": _pattern(
        _CERTIFICATE_ARN,
        "arn:aws:acm:us-east-1:123456789012:certificate/<uuid> (CloudFront takes certificates from us-east-1 "
        'only), or ""',
    ),
}
CONFIG_KEYS = tuple(_CHECKS)


def _check_model_data_url(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not MODEL_URL.fullmatch(value):
        raise ConfigError(f"model_data_url: must be an s3://BUCKET/KEY.tar.gz URL (got {value!r})")
    return value


def _check_model_source(c: StageConfig, where: Callable[[str], str]) -> None:
    """Exactly one of model_package_arn and -c model_data_url; production serves packages only."""
    package = where("model_package_arn")
    if c.model_package_arn and c.model_data_url:
        raise ConfigError(
            f"model_data_url: give -c model_data_url or {package}, not both (the package names its own "
            "artifact)"
        )
    if not c.model_package_arn and not c.model_data_url:
        experiment = (
            ""
            if c.production
            else ", or pass -c model_data_url=s3://BUCKET/KEY/model.tar.gz for an experiment"
        )
        raise ConfigError(
            f"{package}: missing; name the model: make promote STAGE={c.stage} PACKAGE=ARN writes an "
            f"approved package into cdk.json{experiment}"
        )
    if c.production and not c.model_package_arn:
        raise ConfigError(
            f"{package}: a production stage serves only a registered model package, not -c model_data_url: "
            f"register it (python -m training.register), approve it, then make promote STAGE={c.stage} "
            "PACKAGE=ARN"
        )
    if c.model_package_arn:
        group = _PACKAGE_ARN.match(c.model_package_arn)["group"]
        if group != c.model_package_group_name:
            raise ConfigError(
                f"{package}: must be a version of this stage's model package group "
                f"{c.model_package_group_name} (got group {group!r})"
            )


def _check_consistency(c: StageConfig, from_command_line: frozenset[str] = frozenset()) -> None:
    """Rules that span keys; each names the key to change (``-c KEY`` where the command line set it)."""
    prefix = f"{STAGES_CONTEXT_KEY}.{c.stage}"

    def where(key: str) -> str:
        return f"-c {key}" if key in from_command_line else f"{prefix}.{key}"

    _check_model_source(c, where)
    if c.training_host_enabled and not c.training_host_ami_id:
        raise ConfigError(
            f"{prefix}.training_host_ami_id: required when training_host_enabled is true; pin the current "
            f"Deep Learning AMI of the stage's region: aws ssm get-parameter --name {DLAMI_PARAMETER} "
            "--query Parameter.Value --output text"
        )
    if c.max_instances < c.min_instances:
        raise ConfigError(
            f"{prefix}.max_instances: must be >= min_instances ({c.min_instances}) (got {c.max_instances})"
        )
    if c.production and not (c.alarm_email or c.alarm_topic_arn):
        raise ConfigError(
            f"{where('alarm_email')}: a production stage must send its alarms somewhere: set alarm_email (or "
            "alarm_topic_arn, an existing SNS topic) in cdk.json, or pass -c alarm_email=ADDRESS"
        )
    if c.endpoint_read_timeout_seconds < c.model_server_timeout_seconds + MODEL_SERVER_TIMEOUT_MARGIN_SECONDS:
        margin = MODEL_SERVER_TIMEOUT_MARGIN_SECONDS
        raise ConfigError(
            f"{prefix}.endpoint_read_timeout_seconds: must be >= model_server_timeout_seconds + {margin} "
            f"({c.model_server_timeout_seconds + margin}), so the model server gives up before the caller "
            f"(got {c.endpoint_read_timeout_seconds})"
        )
    if c.stage == "prod" and not c.production:
        raise ConfigError(f"{prefix}.production: must be true for the prod stage (got False)")
    if c.production and c.min_instances < 2 and not c.is_serverless:
        raise ConfigError(
            f"{prefix}.min_instances: must be >= 2 in a production stage, so the endpoint spans two "
            f"Availability Zones (got {c.min_instances})"
        )
    if c.production and c.is_serverless:
        raise ConfigError(
            f"{prefix}.serving_mode: must be instance in a production stage (serverless has no GPU, "
            "network isolation or data capture) (got 'serverless')"
        )
    device = "cpu" if c.is_serverless else ("gpu" if _is_gpu_instance(c.instance_type) else "cpu")
    if f"-{device}-" not in c.inference_image_tag:
        raise ConfigError(
            f"{prefix}.inference_image_tag: must be a -{device}- image for serving_mode={c.serving_mode} "
            f"and instance_type={c.instance_type} (got {c.inference_image_tag!r})"
        )
    if c.production and c.is_inference_component:
        raise ConfigError(
            f"{prefix}.serving_mode: must be instance in a production stage, which keeps at least two "
            "instances running (inference_component scales to zero and starts again in minutes) "
            "(got 'inference_component')"
        )
    if c.is_inference_component and c.instance_type not in INSTANCE_SPECS:
        raise ConfigError(
            f"{prefix}.instance_type: serving_mode inference_component needs the vCPUs, memory and GPUs of "
            f"the instance type (stacks/instance_types.py knows {', '.join(sorted(INSTANCE_SPECS))}) "
            f"(got {c.instance_type!r})"
        )
    if c.is_inference_component and c.data_capture_enabled:
        raise ConfigError(
            f"{prefix}.data_capture_enabled: must be false when serving_mode is inference_component "
            "(SageMaker documents data capture for model-based endpoints only)"
        )
    if c.is_inference_component and c.traffic_routing == "CANARY":
        raise ConfigError(
            f"{prefix}.traffic_routing: must be ALL_AT_ONCE when serving_mode is inference_component (a new "
            "model is a rolling update of the component's copies, not a blue/green canary) (got 'CANARY')"
        )
    if c.is_serverless and c.data_capture_enabled:
        raise ConfigError(
            f"{prefix}.data_capture_enabled: must be false when serving_mode is serverless "
            "(serverless endpoints do not support data capture)"
        )
    _check_front_door(c, prefix)
    if c.lambda_provisioned_concurrency_max < c.lambda_provisioned_concurrency:
        raise ConfigError(
            f"{prefix}.lambda_provisioned_concurrency_max: must be >= lambda_provisioned_concurrency "
            f"({c.lambda_provisioned_concurrency}) (got {c.lambda_provisioned_concurrency_max})"
        )
    if c.lambda_provisioned_concurrency_max > c.lambda_reserved_concurrency:
        raise ConfigError(
            f"{prefix}.lambda_provisioned_concurrency_max: must be <= lambda_reserved_concurrency "
            f"({c.lambda_reserved_concurrency}) (got {c.lambda_provisioned_concurrency_max})"
        )
    if c.production and not c.provisioned_concurrency_autoscaling:
        raise ConfigError(
            f"{prefix}.lambda_provisioned_concurrency_max: must be > lambda_provisioned_concurrency in a "
            f"production stage, which autoscales provisioned concurrency "
            f"(got {c.lambda_provisioned_concurrency_max})"
        )
    if c.traffic_routing == "CANARY" and c.is_serverless:
        raise ConfigError(
            f"{prefix}.traffic_routing: must be ALL_AT_ONCE when serving_mode is serverless (got 'CANARY')"
        )
    # SageMaker requires the canary to be at most 50% of the variant's instances: one instance has none.
    if c.traffic_routing == "CANARY" and c.min_instances < 2:
        raise ConfigError(
            f"{prefix}.traffic_routing: must be ALL_AT_ONCE when min_instances is 1 (a canary may be at most "
            "half of the instances) (got 'CANARY')"
        )


def _check_front_door(c: StageConfig, prefix: str) -> None:
    if bool(c.front_door_domain_name) != bool(c.front_door_certificate_arn):
        missing = "front_door_certificate_arn" if c.front_door_domain_name else "front_door_domain_name"
        raise ConfigError(
            f"{prefix}.{missing}: front_door_domain_name and front_door_certificate_arn go together (a "
            "distribution serves an alternate domain name only with a certificate that covers it)"
        )
    if c.front_door_domain_name and not c.front_door_enabled:
        raise ConfigError(
            f"{prefix}.front_door_domain_name: set only with front_door_enabled true (got "
            f"{c.front_door_domain_name!r})"
        )
    origin_wait = c.lambda_timeout_seconds + ORIGIN_READ_MARGIN_SECONDS
    if c.front_door_enabled and origin_wait > CLOUDFRONT_ORIGIN_READ_TIMEOUT_LIMIT_SECONDS:
        raise ConfigError(
            f"{prefix}.endpoint_read_timeout_seconds: with front_door_enabled the Lambda's timeout "
            f"(attempts x (connect + read) + backoff + margin = {c.lambda_timeout_seconds} s) must leave "
            "CloudFront's "
            f"{CLOUDFRONT_ORIGIN_READ_TIMEOUT_LIMIT_SECONDS} s origin timeout {ORIGIN_READ_MARGIN_SECONDS} s "
            "to spare: lower endpoint_read_timeout_seconds or endpoint_max_attempts "
            f"(got {c.endpoint_read_timeout_seconds})"
        )


def _is_gpu_instance(instance_type: str) -> bool:
    family = instance_type.split(".")[1]
    return family.startswith(("g", "p"))


def load_stage_config(context: Callable[[str], Any]) -> StageConfig:
    """Build the stage's config from CDK context (``app.node.try_get_context``); raise ConfigError."""
    defaults = context(DEFAULTS_CONTEXT_KEY)
    stages = context(STAGES_CONTEXT_KEY)
    if not isinstance(defaults, Mapping) or not isinstance(stages, Mapping) or not stages:
        raise ConfigError(
            f"cdk.json: context must hold {DEFAULTS_CONTEXT_KEY!r} and {STAGES_CONTEXT_KEY!r} objects"
        )
    stage = context("stage")
    allowed_stages = ", ".join(sorted(stages))
    if not stage:
        raise ConfigError(f"stage: missing; pass -c stage=NAME with NAME one of {allowed_stages}")
    if not isinstance(stage, str) or stage not in stages:
        raise ConfigError(f"stage: must be one of {allowed_stages} (got {stage!r})")
    if not _STAGE_NAME.fullmatch(stage):
        raise ConfigError(
            f"stage: must be 2-12 lower-case letters or digits, starting with a letter (got {stage!r})"
        )
    overrides = stages[stage]
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{STAGES_CONTEXT_KEY}.{stage}: must be an object of config keys")

    values: dict[str, Any] = {}
    for source, mapping in ((DEFAULTS_CONTEXT_KEY, defaults), (f"{STAGES_CONTEXT_KEY}.{stage}", overrides)):
        unknown = sorted(set(mapping) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"{source}.{unknown[0]}: unknown key; allowed keys are listed in README.md")
        values.update(mapping)
    from_command_line = {key for key in COMMAND_LINE_KEYS if context(key) is not None}
    committed_package = values.get("model_package_arn")
    if "model_package_arn" in from_command_line and committed_package not in (
        "",
        None,
        context("model_package_arn"),
    ):
        # Promotion is the reviewed cdk.json change: the command line may stand in for a package only
        # where none is committed (an offline synth, a stage's first deploy).
        raise ConfigError(
            f"-c model_package_arn: not allowed while {STAGES_CONTEXT_KEY}.{stage}.model_package_arn names "
            f"the stage's package ({committed_package}); promote another with make promote STAGE={stage} "
            "PACKAGE=ARN"
        )
    values.update({key: context(key) for key in from_command_line})

    checked: dict[str, Any] = {}
    for key, check in _CHECKS.items():
        where = f"-c {key}" if key in from_command_line else f"{STAGES_CONTEXT_KEY}.{stage}.{key}"
        if key not in values:
            raise ConfigError(f"{where}: missing; set it in {DEFAULTS_CONTEXT_KEY} or the stage")
        checked[key] = check(where, values[key])

    config = StageConfig(
        stage=stage, model_data_url=_check_model_data_url(context("model_data_url")), **checked
    )
    _check_consistency(config, frozenset(from_command_line))
    return config


def config_field_names() -> tuple[str, ...]:
    """The cdk.json keys, in declaration order (stage and model_data_url come only from -c)."""
    return tuple(f.name for f in fields(StageConfig) if f.name not in ("stage", "model_data_url"))
