"""`make preflight`: which account quota a stage would exceed, checked against stubbed AWS answers.

Real botocore clients with botocore's Stubber: every request is validated against the service's model, and
every stubbed answer must have been asked for. Quota codes marked EXAMPLE are made up (real ones are opaque
and differ per instance type); the Lambda and EC2 G/VT codes are the real ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from stacks.preflight import (
    CANNOT_CHECK,
    OK,
    PLACEHOLDER_MODEL_DATA_URL,
    WILL_FAIL,
    Clients,
    Result,
    TrainingJob,
    exit_code,
    main,
    run_checks,
    spot_quota_name,
)

REGION = "eu-west-1"
ENDPOINT_QUOTA = ("ml.g4dn.xlarge for endpoint usage", "L-EXAMPLE01")
SPOT_TRAINING_QUOTA = ("ml.g4dn.xlarge for spot training job usage", "L-EXAMPLE02")
OTHER_QUOTA = ("ml.m5.large for endpoint usage", "L-EXAMPLE03")


def quota(service_code: str, name: str, code: str, value: float) -> dict[str, Any]:
    return {"ServiceCode": service_code, "QuotaCode": code, "QuotaName": name, "Value": float(value),
            "Adjustable": True}  # fmt: skip


class Account:
    """One stubbed AWS account: queue its answers in the order the checks ask, then run the tool."""

    def __init__(self) -> None:
        # Stubbed clients still sign their requests, so the session needs some (never used) keys.
        keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        session = boto3.Session(region_name=REGION, **keys)
        self.session = session
        self.clients = Clients.from_session(session, REGION)
        self.stubs = {name: Stubber(getattr(self.clients, name)) for name in vars(self.clients)}
        for stub in self.stubs.values():
            stub.activate()

    def lambda_limits(self, limit: int, unreserved: int) -> Account:
        self.stubs["lambda_"].add_response(
            "get_account_settings",
            {"AccountLimit": {"ConcurrentExecutions": limit, "UnreservedConcurrentExecutions": unreserved}},
            {},
        )
        return self

    def api_stack_absent(self, stage: str) -> Account:
        name = f"dogbreed-{stage}-api"
        self.stubs["cloudformation"].add_client_error(
            "describe_stacks",
            service_error_code="ValidationError",
            service_message=f"Stack with id {name} does not exist",
            expected_params={"StackName": name},
        )
        return self

    def api_stack_deployed(self, stage: str, function_name: str, reserved: int) -> Account:
        name = f"dogbreed-{stage}-api"
        stack = {"StackName": name, "CreationTime": "2026-01-01T00:00:00Z", "StackStatus": "UPDATE_COMPLETE",
                 "Outputs": [{"OutputKey": "FunctionName", "OutputValue": function_name}]}  # fmt: skip
        self.stubs["cloudformation"].add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": name})
        self.stubs["lambda_"].add_response(
            "get_function_concurrency",
            {"ReservedConcurrentExecutions": reserved},
            {"FunctionName": function_name},
        )
        return self

    def quotas(
        self, service_code: str, *pages: list[dict], operation: str = "list_service_quotas"
    ) -> Account:
        """One ListServiceQuotas (or ListAWSDefaultServiceQuotas) listing, page by page."""
        for number, page in enumerate(pages):
            params = {"ServiceCode": service_code, "MaxResults": 100}
            if number:
                params["NextToken"] = f"page-{number + 1}"
            response: dict[str, Any] = {"Quotas": page}
            if number + 1 < len(pages):
                response["NextToken"] = f"page-{number + 2}"
            self.stubs["service_quotas"].add_response(operation, response, params)
        return self

    def sagemaker_quotas(self, endpoint: float, spot_training: float) -> Account:
        return self.quotas(
            "sagemaker",
            [
                quota("sagemaker", *OTHER_QUOTA, 4),
                quota("sagemaker", *ENDPOINT_QUOTA, endpoint),
                quota("sagemaker", *SPOT_TRAINING_QUOTA, spot_training),
            ],
        )

    def training_log_group(self, exists: bool) -> Account:
        """The one DescribeLogGroups a stage that does not own the training log group asks."""
        groups = [{"logGroupName": "/aws/sagemaker/TrainingJobs", "arn": "arn:aws:logs:eu-west-1:1:x"}]
        self.stubs["logs"].add_response(
            "describe_log_groups",
            {"logGroups": groups if exists else []},
            {"logGroupNamePrefix": "/aws/sagemaker/TrainingJobs"},
        )
        return self

    def denied(self, client: str, operation: str, action: str, times: int = 1) -> Account:
        message = f"User: arn:aws:iam::123456789012:user/dev is not authorized to perform: {action}"
        for _ in range(times):
            self.stubs[client].add_client_error(
                operation,
                service_error_code="AccessDeniedException",
                service_message=message,
                http_status_code=403,
            )
        return self

    def preflight(self, *argv: str, capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
        code = main(list(argv), session=self.session, clients=self.clients)
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()
        return code, capsys.readouterr().out.splitlines()

    def checks(self, config: Any, job: TrainingJob | None = None) -> list[Result]:
        results = run_checks(config, self.clients, REGION, job or TrainingJob())
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()
        return results


def line(lines: list[str], check: str) -> str:
    [found] = [entry for entry in lines if check in entry]
    return found


def dev_config(**changes: Any):
    from stacks.model_environment import stage_config_from_cdk_json

    config = stage_config_from_cdk_json("dev", model_data_url=PLACEHOLDER_MODEL_DATA_URL)
    return dataclasses.replace(config, **changes)


@pytest.fixture
def account() -> Account:
    return Account()


def test_prod_in_an_account_with_room_for_it_passes(account, capsys):
    account.lambda_limits(1000, 1000).api_stack_absent("prod").sagemaker_quotas(endpoint=6, spot_training=2)

    code, lines = account.preflight("--stage", "prod", capsys=capsys)

    assert code == 0
    assert lines[0] == f"preflight dogbreed-prod in {REGION}:"
    assert [entry.split()[0] for entry in lines[1:4]] == [OK, OK, OK]
    assert "ConcurrentExecutions must be >= 300 (200 lambda_reserved_concurrency + 0 reserved" in lines[1]
    # prod autoscales up to 3 instances, and a blue/green update runs a second fleet beside them.
    assert "two fleets of up to 3 (max_instances): 6 x ml.g4dn.xlarge" in lines[2]
    assert lines[-1] == "preflight: 4 OK, 0 WILL FAIL, 0 CANNOT CHECK"  # prod owns the training log group


def test_a_new_account_with_10_concurrent_executions_will_fail_naming_the_lambda_quota(account, capsys):
    account.lambda_limits(10, 10).api_stack_absent("prod").sagemaker_quotas(endpoint=6, spot_training=2)

    code, lines = account.preflight("--stage", "prod", capsys=capsys)

    assert code == 1
    failing = line(lines, "Lambda reserved concurrency")
    assert failing.startswith(WILL_FAIL)
    assert "'Concurrent executions' (lambda L-B99A9384) is 10" in failing
    assert failing.endswith(
        "raise it to 300: aws service-quotas request-service-quota-increase --service-code lambda "
        f"--quota-code L-B99A9384 --desired-value 300 --region {REGION}"
    )


def test_a_redeploy_does_not_count_the_functions_own_reservation_against_itself(account, capsys):
    # The deployed function already holds its 200: only 100 are unreserved, exactly Lambda's minimum.
    account.lambda_limits(300, 100).api_stack_deployed("prod", "dogbreed-prod-api-Fn", reserved=200)
    account.sagemaker_quotas(endpoint=6, spot_training=2)

    code, lines = account.preflight("--stage", "prod", capsys=capsys)

    assert code == 0
    assert "must be >= 300 (200 lambda_reserved_concurrency + 0 reserved by other functions" in lines[1]


def test_other_functions_reservations_add_to_what_the_stage_needs(account, capsys):
    # dev is deployed in the same account and reserves its 20; prod is not deployed yet.
    account.lambda_limits(310, 290).api_stack_absent("prod").sagemaker_quotas(endpoint=6, spot_training=2)

    code, lines = account.preflight("--stage", "prod", capsys=capsys)

    assert code == 1
    assert "must be >= 320 (200 lambda_reserved_concurrency + 20 reserved by other functions" in lines[1]
    assert "--desired-value 320" in lines[1]


@pytest.mark.parametrize(
    ("endpoint_quota", "first_deploy_fails"),
    [(3, False), (0, True)],
    ids=["enough-for-one-fleet", "none-at-all"],
)
def test_an_endpoint_quota_below_two_fleets_will_fail_naming_the_quota(
    account, capsys, endpoint_quota, first_deploy_fails
):
    account.lambda_limits(1000, 1000).api_stack_absent("prod")
    account.sagemaker_quotas(endpoint=endpoint_quota, spot_training=2)

    code, lines = account.preflight("--stage", "prod", capsys=capsys)

    assert code == 1
    failing = line(lines, "SageMaker endpoint")
    assert failing.startswith(WILL_FAIL)
    assert f"'ml.g4dn.xlarge for endpoint usage' (sagemaker L-EXAMPLE01) is {endpoint_quota}" in failing
    assert "--service-code sagemaker --quota-code L-EXAMPLE01 --desired-value 6" in failing
    assert ("even the first deploy needs 2 (min_instances)" in failing) is first_deploy_fails


@pytest.mark.parametrize(
    ("endpoint_quota", "status", "first_deploy_fails"),
    [(3, OK, False), (2, WILL_FAIL, False), (0, WILL_FAIL, True)],
    ids=["max-and-one-more", "max-only", "none-at-all"],
)
def test_an_inference_component_stage_needs_its_maximum_and_one_instance_more(
    account, capsys, endpoint_quota, status, first_deploy_fails
):
    """dev (inference_component in cdk.json): managed instance scaling runs up to max_instances (2), and a
    rolling update starts a new copy, on an instance of its own, before it stops an old one."""
    account.lambda_limits(1000, 1000).api_stack_absent("dev")
    account.sagemaker_quotas(endpoint=endpoint_quota, spot_training=2).training_log_group(exists=True)

    code, lines = account.preflight("--stage", "dev", capsys=capsys)

    endpoint = line(lines, "SageMaker endpoint")
    assert endpoint.startswith(status)
    assert code == (0 if status == OK else 1)
    assert (
        "managed instance scaling runs up to 2 (max_instances) and a rolling update starts one new copy, "
        "one more instance, before it stops an old one: 3 x ml.g4dn.xlarge"
    ) in endpoint
    assert "two fleets" not in endpoint
    assert ("--quota-code L-EXAMPLE01 --desired-value 3" in endpoint) is (status == WILL_FAIL)
    assert ("even the first deploy needs 1 (min_instances)" in endpoint) is first_deploy_fails


def test_a_quota_on_the_second_page_of_list_service_quotas_is_found(account, capsys):
    account.lambda_limits(1000, 1000).api_stack_absent("prod")
    account.quotas(
        "sagemaker",
        [quota("sagemaker", *OTHER_QUOTA, 4), quota("sagemaker", *SPOT_TRAINING_QUOTA, 2)],
        [quota("sagemaker", *ENDPOINT_QUOTA, 6)],
    )

    code, lines = account.preflight("--stage", "prod", capsys=capsys)

    assert code == 0, lines
    assert "'ml.g4dn.xlarge for endpoint usage' (sagemaker L-EXAMPLE01) is 6" in lines[2]


def test_a_quota_without_an_applied_value_is_read_from_the_aws_defaults(account, capsys):
    # ListServiceQuotas leaves out quotas whose applied value is not available; the default is in force.
    account.lambda_limits(1000, 1000).api_stack_absent("prod")
    account.quotas("sagemaker", [quota("sagemaker", *ENDPOINT_QUOTA, 6)])
    account.quotas(
        "sagemaker",
        [quota("sagemaker", *SPOT_TRAINING_QUOTA, 0)],
        operation="list_aws_default_service_quotas",
    )

    code, lines = account.preflight("--stage", "prod", capsys=capsys)

    assert code == 1
    failing = line(lines, "SageMaker training job")
    assert failing.startswith(WILL_FAIL)
    assert "training.launch starts 1 x ml.g4dn.xlarge (managed spot)" in failing
    assert "'ml.g4dn.xlarge for spot training job usage' (sagemaker L-EXAMPLE02) is 0" in failing
    assert "--desired-value 1" in failing


def test_access_denied_is_cannot_check_with_the_missing_permission_and_exit_code_2(account, capsys):
    account.denied("lambda_", "get_account_settings", "lambda:GetAccountSettings")
    # Both SageMaker checks ask; a refused listing is not remembered as an empty one.
    account.denied("service_quotas", "list_service_quotas", "servicequotas:ListServiceQuotas", times=2)
    account.training_log_group(exists=True)

    code, lines = account.preflight("--stage", "dev", capsys=capsys)

    assert code == 2
    assert [entry.split()[0] for entry in lines[1:4]] == ["CANNOT"] * 3
    assert line(lines, "Lambda reserved concurrency") == (
        f"{CANNOT_CHECK} Lambda reserved concurrency: GetAccountSettings: AccessDeniedException: User: "
        "arn:aws:iam::123456789012:user/dev is not authorized to perform: lambda:GetAccountSettings"
    )
    assert "servicequotas:ListServiceQuotas" in line(lines, "SageMaker endpoint")


@pytest.mark.parametrize(
    ("statuses", "code"),
    [((OK, OK), 0), ((OK, CANNOT_CHECK), 2), ((CANNOT_CHECK, WILL_FAIL), 1)],
)
def test_the_exit_status_reports_the_worst_outcome_a_known_failure_first(statuses, code):
    assert exit_code([Result(status, "check", "detail") for status in statuses]) == code


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({}, "preflight: no AWS region: set AWS_REGION, give AWS_PROFILE a region, or pass --region"),
        # boto3 itself ignores AWS_REGION; the tool reads it as the AWS CLI does, so it gets to credentials.
        (
            {"AWS_REGION": REGION},
            "preflight: no AWS credentials (aws configure, AWS_PROFILE, AWS_ACCESS_KEY_ID)",
        ),
    ],
    ids=["no-region", "aws-region-only"],
)
def test_a_missing_region_or_credentials_is_one_line_and_exit_code_2(
    monkeypatch, tmp_path, capsys, environment, message
):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    code = main(["--stage", "dev"])

    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_an_unknown_stage_is_a_one_line_config_error(capsys):
    assert main(["--stage", "staging"]) == 2
    assert (
        capsys.readouterr().err
        == "preflight: config error: stage: must be one of dev, prod (got 'staging')\n"
    )


def test_the_training_host_needs_the_spot_vcpus_of_its_instance_family(account):
    account.lambda_limits(1000, 1000).api_stack_absent("dev").sagemaker_quotas(endpoint=4, spot_training=2)
    account.stubs["ec2"].add_response(
        "describe_instance_types",
        {"InstanceTypes": [{"InstanceType": "g5.xlarge", "VCpuInfo": {"DefaultVCpus": 4}}]},
        {"InstanceTypes": ["g5.xlarge"]},
    )
    account.quotas(
        "ec2",
        [
            quota("ec2", "Running On-Demand G and VT instances", "L-DB2E81BA", 64),
            quota("ec2", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests", "L-EXAMPLE04", 5),
            quota("ec2", "All G and VT Spot Instance Requests", "L-3819A6DF", 0),
        ],
    )

    account.training_log_group(exists=True)
    results = account.checks(dev_config(training_host_enabled=True, training_host_instance_type="g5.xlarge"))

    [host] = [r for r in results if r.check == "EC2 training host (spot)"]
    assert host.status == WILL_FAIL
    assert host.detail.startswith("one g5.xlarge needs 4 vCPUs")
    assert "'All G and VT Spot Instance Requests' (ec2 L-3819A6DF) is 0" in host.detail
    assert "--service-code ec2 --quota-code L-3819A6DF --desired-value 4" in host.detail


@pytest.mark.parametrize(
    ("instance_type", "expected"),
    [
        ("g5.xlarge", "All G and VT Spot Instance Requests"),
        ("vt1.3xlarge", "All G and VT Spot Instance Requests"),
        ("m5.large", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
        ("p4d.24xlarge", "All P4, P3 and P2 Spot Instance Requests"),
        ("p5.48xlarge", "All P5 Spot Instance Requests"),
        ("inf2.xlarge", "All Inf Spot Instance Requests"),
        ("dl1.24xlarge", "All DL Spot Instance Requests"),
        ("hpc7g.16xlarge", None),
    ],
)
def test_each_instance_family_maps_to_its_spot_quota(instance_type, expected):
    # The quota names of https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-spot-limits.html, and one
    # that is not a Spot quota although it names the same families.
    names = [
        "All DL Spot Instance Requests",
        "All G and VT Spot Instance Requests",
        "All Inf Spot Instance Requests",
        "All P4, P3 and P2 Spot Instance Requests",
        "All P5 Spot Instance Requests",
        "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests",
        "Running On-Demand G and VT instances",
    ]
    assert spot_quota_name(names, instance_type) == expected


def test_a_serverless_stage_checks_the_accounts_serverless_concurrency(account):
    account.lambda_limits(1000, 1000).api_stack_absent("dev")
    serverless = "Maximum total concurrency that can be allocated across all serverless endpoints"
    account.quotas(
        "sagemaker",
        [quota("sagemaker", serverless, "L-EXAMPLE05", 3), quota("sagemaker", *SPOT_TRAINING_QUOTA, 2)],
    )

    account.training_log_group(exists=True)
    results = account.checks(dev_config(serving_mode="serverless", serverless_max_concurrency=5))

    [endpoint] = [r for r in results if r.check == "SageMaker endpoint"]
    assert endpoint.status == WILL_FAIL
    assert endpoint.detail.startswith("the serverless endpoint allocates 5 (serverless_max_concurrency)")
    assert "--quota-code L-EXAMPLE05 --desired-value 5" in endpoint.detail


def test_the_training_job_defaults_are_those_of_training_launch():
    from training.launch import build_parser_launch

    launch = build_parser_launch().parse_args([])

    assert TrainingJob() == TrainingJob(launch.instance_type, launch.instance_count, launch.spot)


def test_a_stage_that_does_not_own_the_training_log_group_needs_it_to_exist(account):
    """The training role may not create the group (it would have no retention and no key): without it,
    jobs run without logs."""
    account.lambda_limits(1000, 1000).api_stack_absent("dev").sagemaker_quotas(endpoint=4, spot_training=2)
    account.training_log_group(exists=False)

    results = account.checks(dev_config())

    [logs] = [r for r in results if r.check == "Training log group"]
    assert logs.status == WILL_FAIL
    assert "/aws/sagemaker/TrainingJobs does not exist" in logs.detail
    assert "training_log_group_owner: true" in logs.detail


def test_the_stage_that_owns_the_training_log_group_asks_nothing(account):
    account.lambda_limits(1000, 1000).api_stack_absent("dev").sagemaker_quotas(endpoint=4, spot_training=2)

    results = account.checks(dev_config(training_log_group_owner=True))

    [logs] = [r for r in results if r.check == "Training log group"]
    assert logs.status == OK and "declares /aws/sagemaker/TrainingJobs" in logs.detail
