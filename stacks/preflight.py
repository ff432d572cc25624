"""Preflight: before a deploy, say which account quota this stage would exceed and how to raise it.

    make preflight STAGE=prod
    python -m stacks.preflight --stage prod [--region eu-west-1] [--training-instance-count 2 ...]

One line per check, ``OK`` / ``WILL FAIL`` / ``CANNOT CHECK``; a failing line names the quota (name,
service code, quota code), its current value, the value this stage needs and the
``aws service-quotas request-service-quota-increase`` command that asks for it. Exit status: 1 when any check
will fail, else 2 when any could not be checked (no permission, no credentials), else 0.

What each check compares, and the AWS documentation behind it: docs/infrastructure.md, section Preflight.
Plain Python on boto3: no CDK, no torch, so it runs from a launch-only venv too. IAM permissions it uses:
lambda:GetAccountSettings, lambda:GetFunctionConcurrency, cloudformation:DescribeStacks,
servicequotas:ListServiceQuotas, servicequotas:ListAWSDefaultServiceQuotas, ec2:DescribeInstanceTypes,
logs:DescribeLogGroups.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from stacks.config import TRAINING_LOG_GROUP, ConfigError, StageConfig
from stacks.model_environment import stage_config_from_cdk_json

OK, WILL_FAIL, CANNOT_CHECK = "OK", "WILL FAIL", "CANNOT CHECK"
LAMBDA_CHECK = "Lambda reserved concurrency"
ENDPOINT_CHECK = "SageMaker endpoint"
TRAINING_HOST_CHECK = "EC2 training host (spot)"
TRAINING_JOB_CHECK = "SageMaker training job"
TRAINING_LOGS_CHECK = "Training log group"

# No quota depends on the model artifact; the URL only has to pass validation.
PLACEHOLDER_MODEL_DATA_URL = "s3://preflight-placeholder/model.tar.gz"
# Lambda lets a function reserve concurrency only while at least 100 executions stay unreserved for the
# functions without a reservation ("You can reserve up to the Unreserved account concurrency value minus
# 100", https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html; PutFunctionConcurrency,
# https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionConcurrency.html). New accounts can start
# far below the default limit of 1,000 (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
LAMBDA_UNRESERVED_MINIMUM = 100
LAMBDA_SERVICE_CODE = "lambda"
LAMBDA_QUOTA_CODE = "L-B99A9384"
LAMBDA_QUOTA_NAME = "Concurrent executions"
# SageMaker names its per-instance-type quotas "<type> for endpoint usage", "<type> for spot training job
# usage", "<type> for training job usage"; their codes differ per type and region, so they are found by name
# (https://docs.aws.amazon.com/general/latest/gr/sagemaker.html#limits_sagemaker).
SERVERLESS_QUOTA_NAME = "Maximum total concurrency that can be allocated across all serverless endpoints"
# EC2 Spot quotas count vCPUs per group of instance families, "All G and VT Spot Instance Requests" and so on
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-spot-limits.html).
_SPOT_QUOTA = re.compile(r"^All (?P<families>.+) Spot Instance Requests$")
# training/launch.py's defaults (--instance-type, --instance-count, --spot). Importing that module would pull
# in torchvision (training.config), so they are repeated; tests/infra/test_preflight.py keeps them equal.
TRAINING_INSTANCE_TYPE = "ml.g4dn.xlarge"
TRAINING_INSTANCE_COUNT = 1
TRAINING_SPOT = True
_ML_INSTANCE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
# ListServiceQuotas has low request rates; standard mode retries throttling with backoff.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


@dataclass(frozen=True)
class Result:
    status: str
    check: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<12} {self.check}: {self.detail}"


@dataclass(frozen=True)
class Quota:
    service_code: str
    code: str
    name: str
    value: float
    adjustable: bool = True

    def label(self) -> str:
        return f"{self.name!r} ({self.service_code} {self.code})"

    def increase(self, needed: int, region: str) -> str:
        if not self.adjustable:
            return "it is not adjustable: change the stage's config instead"
        return (
            f"raise it to {needed}: aws service-quotas request-service-quota-increase --service-code "
            f"{self.service_code} --quota-code {self.code} --desired-value {needed} --region {region}"
        )


@dataclass(frozen=True)
class TrainingJob:
    """What ``training.launch`` will start: its instance type, count and market."""

    instance_type: str = TRAINING_INSTANCE_TYPE
    instance_count: int = TRAINING_INSTANCE_COUNT
    spot: bool = TRAINING_SPOT


@dataclass(frozen=True)
class Clients:
    lambda_: Any
    cloudformation: Any
    service_quotas: Any
    ec2: Any
    logs: Any

    @classmethod
    def from_session(cls, session: boto3.Session, region: str) -> Clients:
        def client(name: str) -> Any:
            return session.client(name, region_name=region, config=CLIENT_CONFIG)

        return cls(
            client("lambda"),
            client("cloudformation"),
            client("service-quotas"),
            client("ec2"),
            client("logs"),
        )


class QuotaBook:
    """Service Quotas by name, each service listed once: applied values first, then AWS's defaults.

    ListServiceQuotas leaves out a quota whose applied value is not available
    (https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/API_ListServiceQuotas.html); its
    default (ListAWSDefaultServiceQuotas) is then the value in force. Both are paginated.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._listings: dict[tuple[str, str], dict[str, Quota]] = {}

    def find(self, service_code: str, pick: Callable[[Collection[str]], str | None]) -> Quota | None:
        """The quota whose name ``pick`` chooses among the service's quota names, or None."""
        for operation in ("list_service_quotas", "list_aws_default_service_quotas"):
            listing = self._listing(operation, service_code)
            name = pick(listing.keys())
            if name is not None:
                return listing[name]
        return None

    def named(self, service_code: str, name: str) -> Quota | None:
        return self.find(service_code, lambda names: name if name in names else None)

    def _listing(self, operation: str, service_code: str) -> dict[str, Quota]:
        key = (operation, service_code)
        if key not in self._listings:
            pages = self._client.get_paginator(operation).paginate(
                ServiceCode=service_code, PaginationConfig={"PageSize": 100}
            )
            self._listings[key] = {
                q["QuotaName"]: Quota(
                    service_code, q["QuotaCode"], q["QuotaName"], q["Value"], q.get("Adjustable", True)
                )
                for page in pages
                for q in page.get("Quotas", [])
            }
        return self._listings[key]


def spot_quota_name(names: Collection[str], instance_type: str) -> str | None:
    """The EC2 Spot vCPU quota that covers ``instance_type``'s family, or None.

    ``g5.xlarge`` -> "All G and VT Spot Instance Requests"; ``p4d.24xlarge`` -> "All P4, P3 and P2 Spot
    Instance Requests"; ``m5.large`` -> "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests".
    A quota naming the generation (P4) wins over one naming only the letters (P).
    """
    family = instance_type.split(".")[0]
    letters = re.match(r"[a-z]*", family).group()
    generation = re.match(r"[a-z]*\d*", family).group()
    by_letters = None
    for name in sorted(names):
        match = _SPOT_QUOTA.match(name)
        if not match:
            continue
        tokens = {token.lower() for token in re.findall(r"[A-Za-z]+\d*", match["families"])}
        if generation in tokens:
            return name
        if letters in tokens and by_letters is None:
            by_letters = name
    return by_letters


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _compare(check: str, quota: Quota, needed: int, why: str, region: str) -> Result:
    have = f"{quota.label()} is {_number(quota.value)}"
    if quota.value >= needed:
        return Result(OK, check, f"{why}; {have}")
    return Result(WILL_FAIL, check, f"{why}; {have}: {quota.increase(needed, region)}")


def _missing(check: str, name: str, service_code: str, region: str) -> Result:
    return Result(
        CANNOT_CHECK,
        check,
        f"Service Quotas has no quota named {name!r} ({service_code}) in {region}: is the instance type "
        "offered there? Look it up in the Service Quotas console",
    )


# --- the checks ------------------------------------------------------------------------------------------


def check_lambda_concurrency(config: StageConfig, clients: Clients, region: str) -> Result:
    """The API stack's reserved concurrency must leave 100 of the account's concurrency unreserved."""
    limits = clients.lambda_.get_account_settings()["AccountLimit"]
    limit = limits["ConcurrentExecutions"]
    # A redeploy replaces this function's own reservation, so it does not count against the new one.
    own = _deployed_reservation(config, clients)
    others = limit - limits["UnreservedConcurrentExecutions"] - own
    reserved = config.lambda_reserved_concurrency
    needed = others + reserved + LAMBDA_UNRESERVED_MINIMUM
    why = (
        f"ConcurrentExecutions must be >= {needed} ({reserved} lambda_reserved_concurrency + {others} "
        f"reserved by other functions + {LAMBDA_UNRESERVED_MINIMUM} Lambda keeps unreserved)"
    )
    quota = Quota(LAMBDA_SERVICE_CODE, LAMBDA_QUOTA_CODE, LAMBDA_QUOTA_NAME, limit)
    return _compare(LAMBDA_CHECK, quota, needed, why, region)


def _deployed_reservation(config: StageConfig, clients: Clients) -> int:
    """This stage's function's current reserved concurrency; 0 before the API stack's first deploy."""
    stack = f"{config.stack_prefix}-api"
    try:
        stacks = clients.cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        # DescribeStacks answers ValidationError "Stack with id NAME does not exist" for an unknown stack.
        if "does not exist" in exc.response.get("Error", {}).get("Message", ""):
            return 0
        raise
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    if "FunctionName" not in outputs:
        return 0
    try:
        concurrency = clients.lambda_.get_function_concurrency(FunctionName=outputs["FunctionName"])
    except clients.lambda_.exceptions.ResourceNotFoundException:
        return 0
    return concurrency.get("ReservedConcurrentExecutions", 0)


def check_endpoint_capacity(config: StageConfig, quotas: QuotaBook, region: str) -> Result:
    """Instance mode: room for two fleets of the endpoint's instance type; inference_component mode: for
    ``max_instances`` and one more; serverless: its concurrency."""
    if config.is_serverless:
        quota = quotas.named("sagemaker", SERVERLESS_QUOTA_NAME)
        if quota is None:
            return _missing(ENDPOINT_CHECK, SERVERLESS_QUOTA_NAME, "sagemaker", region)
        needed = config.serverless_max_concurrency
        why = f"the serverless endpoint allocates {needed} (serverless_max_concurrency)"
        return _compare(ENDPOINT_CHECK, quota, needed, why, region)

    name = f"{config.instance_type} for endpoint usage"
    quota = quotas.named("sagemaker", name)
    if quota is None:
        return _missing(ENDPOINT_CHECK, name, "sagemaker", region)
    if config.is_inference_component:
        return _component_capacity(config, quota, region)
    # A blue/green update launches the green fleet while the blue one keeps serving
    # (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_BlueGreenUpdatePolicy.html), at the
    # count autoscaling had reached (the endpoint retains its variant properties:
    # stacks/constructs/endpoint.py).
    fleet, key = (
        (config.max_instances, "max_instances")
        if config.autoscaling_enabled
        else (config.min_instances, "min_instances")
    )
    needed = 2 * fleet
    why = f"a blue/green update runs two fleets of up to {fleet} ({key}): {needed} x {config.instance_type}"
    if quota.value < config.min_instances:
        why += f", and even the first deploy needs {config.min_instances} (min_instances)"
    why += " (other endpoints of the account not counted)"
    return _compare(ENDPOINT_CHECK, quota, needed, why, region)


def _component_capacity(config: StageConfig, quota: Quota, region: str) -> Result:
    """Managed instance scaling runs the endpoint up to ``max_instances`` (one copy per instance), and a
    rolling update starts its one new copy, so one more instance, before it stops an old one."""
    needed = config.max_instances + 1
    why = (
        f"managed instance scaling runs up to {config.max_instances} (max_instances) and a rolling update "
        f"starts one new copy, one more instance, before it stops an old one: {needed} x "
        f"{config.instance_type}"
    )
    # The endpoint starts with InitialInstanceCount (min_instances, at least 1 in the API) before the
    # component places its first copy.
    if quota.value < config.min_instances:
        why += f", and even the first deploy needs {config.min_instances} (min_instances)"
    why += " (other endpoints of the account not counted)"
    return _compare(ENDPOINT_CHECK, quota, needed, why, region)


def check_training_host(config: StageConfig, clients: Clients, quotas: QuotaBook, region: str) -> Result:
    """The optional EC2 training host is one spot instance: its vCPUs against its family's Spot quota."""
    instance_type = config.training_host_instance_type
    described = clients.ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
    vcpus = described[0]["VCpuInfo"]["DefaultVCpus"]
    quota = quotas.find("ec2", lambda names: spot_quota_name(names, instance_type))
    if quota is None:
        name = f"All <{instance_type} family> Spot Instance Requests"
        return _missing(TRAINING_HOST_CHECK, name, "ec2", region)
    why = f"one {instance_type} needs {vcpus} vCPUs (other running spot instances of the account not counted)"
    return _compare(TRAINING_HOST_CHECK, quota, vcpus, why, region)


def check_training_job(job: TrainingJob, quotas: QuotaBook, region: str) -> Result:
    """training.launch's job: its instance count against the per-type (spot) training quota."""
    usage = "spot training job usage" if job.spot else "training job usage"
    name = f"{job.instance_type} for {usage}"
    quota = quotas.named("sagemaker", name)
    if quota is None:
        return _missing(TRAINING_JOB_CHECK, name, "sagemaker", region)
    market = "managed spot" if job.spot else "on-demand"
    why = f"training.launch starts {job.instance_count} x {job.instance_type} ({market})"
    return _compare(TRAINING_JOB_CHECK, quota, job.instance_count, why, region)


def check_training_log_group(config: StageConfig, clients: Clients) -> Result:
    """Training jobs may write to the account's training log group but not create it (it would have no
    retention and no key): it exists, or this stage's training stack declares it."""
    if config.training_log_group_owner:
        return Result(OK, TRAINING_LOGS_CHECK, f"this stage's training stack declares {TRAINING_LOG_GROUP}")
    groups = clients.logs.describe_log_groups(logGroupNamePrefix=TRAINING_LOG_GROUP)["logGroups"]
    if any(group["logGroupName"] == TRAINING_LOG_GROUP for group in groups):
        return Result(OK, TRAINING_LOGS_CHECK, f"{TRAINING_LOG_GROUP} exists")
    return Result(
        WILL_FAIL,
        TRAINING_LOGS_CHECK,
        f"{TRAINING_LOG_GROUP} does not exist and this stage does not declare it: training jobs would run "
        "without logs. Set training_log_group_owner: true on one stage of this account and region "
        "(docs/infrastructure.md, Training) and deploy its training stack first",
    )


def guarded(check: str, run: Callable[[], Result]) -> Result:
    """A check that AWS refused, or that could not reach AWS, says so instead of raising."""
    try:
        return run()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return Result(
            CANNOT_CHECK, check, f"{exc.operation_name}: {error.get('Code')}: {error.get('Message', '')}"
        )
    # No credentials, no network, no endpoint in the region; or a stack without the resource looked for.
    except (BotoCoreError, LookupError) as exc:
        return Result(CANNOT_CHECK, check, str(exc))


def run_checks(config: StageConfig, clients: Clients, region: str, job: TrainingJob) -> list[Result]:
    quotas = QuotaBook(clients.service_quotas)
    checks: list[tuple[str, Callable[[], Result]]] = [
        (LAMBDA_CHECK, lambda: check_lambda_concurrency(config, clients, region)),
        (ENDPOINT_CHECK, lambda: check_endpoint_capacity(config, quotas, region)),
    ]
    if config.training_host_enabled:
        checks.append((TRAINING_HOST_CHECK, lambda: check_training_host(config, clients, quotas, region)))
    checks.append((TRAINING_JOB_CHECK, lambda: check_training_job(job, quotas, region)))
    checks.append((TRAINING_LOGS_CHECK, lambda: check_training_log_group(config, clients)))
    return [guarded(check, run) for check, run in checks]


def exit_code(results: Sequence[Result]) -> int:
    statuses = {r.status for r in results}
    if WILL_FAIL in statuses:
        return 1
    return 2 if CANNOT_CHECK in statuses else 0


# --- command line ----------------------------------------------------------------------------------------


def _ml_instance(value: str) -> str:
    if not _ML_INSTANCE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"must look like ml.g4dn.xlarge (got {value!r})")
    return value


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1 (got {value!r})")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stacks.preflight", description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", required=True, help="a stage of cdk.json (dev, prod)")
    p.add_argument("--region", help="default: AWS_REGION, else AWS_DEFAULT_REGION or the profile's region")
    job = p.add_argument_group("training job (as given to training.launch)")
    job.add_argument("--training-instance-type", type=_ml_instance, default=TRAINING_INSTANCE_TYPE)
    job.add_argument("--training-instance-count", type=_positive, default=TRAINING_INSTANCE_COUNT)
    job.add_argument("--training-spot", action=argparse.BooleanOptionalAction, default=TRAINING_SPOT)
    return p


def _error(message: str, tool: str = "preflight") -> int:
    print(f"{tool}: {message}", file=sys.stderr)
    return 2


def session_region(
    region: str | None, session: boto3.Session | None, *, tool: str, credentials: bool = True
) -> tuple[boto3.Session, str] | int:
    """The session and region to check in, or the exit status after a one-line error (no region, no
    credentials when ``credentials``, an unknown profile)."""
    try:
        session = session or boto3.Session()
        # boto3 reads AWS_DEFAULT_REGION and the profile only; the AWS CLI lets AWS_REGION override both
        # (https://docs.aws.amazon.com/cli/latest/userguide/cli-configure-envvars.html), and so does this.
        region = region or os.environ.get("AWS_REGION") or session.region_name
        if not region:
            return _error("no AWS region: set AWS_REGION, give AWS_PROFILE a region, or pass --region", tool)
        if credentials and session.get_credentials() is None:
            return _error(
                "no AWS credentials (aws configure, AWS_PROFILE, AWS_ACCESS_KEY_ID): nothing checked", tool
            )
    except BotoCoreError as exc:  # e.g. AWS_PROFILE names no profile
        return _error(str(exc), tool)
    return session, region


def main(
    argv: Sequence[str] | None = None, session: boto3.Session | None = None, clients: Clients | None = None
) -> int:
    """Print one line per check; return the exit status. ``session``/``clients`` are for tests."""
    args = build_parser().parse_args(argv)
    try:
        config = stage_config_from_cdk_json(args.stage, model_data_url=PLACEHOLDER_MODEL_DATA_URL)
    except ConfigError as exc:
        return _error(f"config error: {exc}")
    resolved = session_region(args.region, session, tool="preflight", credentials=clients is None)
    if isinstance(resolved, int):
        return resolved
    session, region = resolved
    if clients is None:
        clients = Clients.from_session(session, region)

    job = TrainingJob(args.training_instance_type, args.training_instance_count, args.training_spot)
    results = run_checks(config, clients, region, job)
    print(f"preflight {config.stack_prefix} in {region}:")
    for result in results:
        print(result.line())
    counts = ", ".join(f"{sum(r.status == s for r in results)} {s}" for s in (OK, WILL_FAIL, CANNOT_CHECK))
    print(f"preflight: {counts}")
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
