"""`make deploy-check`: after a deploy, the endpoint runs the EndpointConfig the serving stack names.

Real botocore clients with botocore's Stubber, so every request is checked against the service model. The
case that matters is the one no document settles (docs/infrastructure.md, "After a SageMaker
auto-rollback"): SageMaker rolled the deployment back and the stack kept the new model.
"""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from stacks.deploy_check import MISMATCH, Clients, main
from stacks.preflight import CANNOT_CHECK, OK

REGION = "eu-west-1"
STACK = "dogbreed-prod-serving"
ENDPOINT = "dogbreed-prod"
NEW_CONFIG = "ConfigEndpointConfig-NEW0123456789"
OLD_CONFIG = "ConfigEndpointConfig-OLD0123456789"
NEW_MODEL = "ModelModel-NEW0123456789"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
ARN = f"arn:aws:sagemaker:{REGION}:111122223333:endpoint/{ENDPOINT}"


# Stubbed clients still sign their requests, so the session needs some (never used) keys.
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class Account:
    def __init__(self) -> None:
        self.clients = Clients.from_session(boto3.Session(region_name=REGION, **KEYS), REGION)
        self.cloudformation = Stubber(self.clients.cloudformation)
        self.sagemaker = Stubber(self.clients.sagemaker)
        self.cloudformation.activate()
        self.sagemaker.activate()

    def stack_names(self, config_name: str) -> Account:
        resource = {"LogicalResourceId": "ConfigEndpointConfig1234", "PhysicalResourceId": config_name,
                    "ResourceType": "AWS::SageMaker::EndpointConfig", "Timestamp": NOW,
                    "ResourceStatus": "UPDATE_COMPLETE"}  # fmt: skip
        model = {**resource, "LogicalResourceId": "ModelModel1234", "PhysicalResourceId": NEW_MODEL,
                 "ResourceType": "AWS::SageMaker::Model"}  # fmt: skip
        self.cloudformation.add_response(
            "describe_stack_resources", {"StackResources": [resource, model]}, {"StackName": STACK}
        )
        return self

    def endpoint(self, config_name: str, status: str = "InService", reason: str | None = None) -> Account:
        answer = {"EndpointName": ENDPOINT, "EndpointArn": ARN, "EndpointConfigName": config_name,
                  "EndpointStatus": status, "CreationTime": NOW, "LastModifiedTime": NOW}  # fmt: skip
        if reason:
            answer["FailureReason"] = reason
        self.sagemaker.add_response("describe_endpoint", answer, {"EndpointName": ENDPOINT})
        return self

    def config_model(self, config_name: str, model: str) -> Account:
        self.sagemaker.add_response(
            "describe_endpoint_config",
            {
                "EndpointConfigName": config_name,
                "EndpointConfigArn": f"{ARN}-config",
                "CreationTime": NOW,
                "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": model}],
            },
            {"EndpointConfigName": config_name},
        )
        return self

    def model_exists(self, model: str) -> Account:
        self.sagemaker.add_response(
            "describe_model",
            {"ModelName": model, "ModelArn": f"{ARN}-model", "CreationTime": NOW},
            {"ModelName": model},
        )
        return self

    def model_gone(self, model: str) -> Account:
        self.sagemaker.add_client_error(
            "describe_model",
            service_error_code="ValidationException",
            service_message=f'Could not find model "{model}".',
            expected_params={"ModelName": model},
        )
        return self

    def run(self, capsys) -> tuple[int, str]:
        code = main(["--stage", "prod", "--region", REGION], clients=self.clients)
        self.cloudformation.assert_no_pending_responses()
        self.sagemaker.assert_no_pending_responses()
        return code, capsys.readouterr().out.strip()


def test_an_endpoint_on_the_stacks_config_with_its_model_is_ok(capsys):
    account = Account().stack_names(NEW_CONFIG).endpoint(NEW_CONFIG)
    account.config_model(NEW_CONFIG, NEW_MODEL).model_exists(NEW_MODEL)
    code, line = account.run(capsys)
    assert code == 0
    assert line.startswith(OK) and NEW_CONFIG in line and NEW_MODEL in line


def test_a_deployment_sagemaker_rolled_back_under_a_successful_stack_is_a_mismatch(capsys):
    reason = "Deployment rolled back: alarm dogbreed-prod-ModelLatencyP99 in ALARM"
    code, line = Account().stack_names(NEW_CONFIG).endpoint(OLD_CONFIG, reason=reason).run(capsys)
    assert code == 1
    assert line.startswith(MISMATCH)
    assert f"runs {OLD_CONFIG}, the stack names {NEW_CONFIG}" in line
    # prod serves a package: the way back is the previous package, by reverting the promotion.
    assert reason in line
    assert "Deploy the previous model_package_arn (revert the promotion's cdk.json change) again" in line


def test_an_endpoint_whose_model_was_deleted_cannot_heal(capsys):
    account = Account().stack_names(NEW_CONFIG).endpoint(NEW_CONFIG)
    code, line = account.config_model(NEW_CONFIG, NEW_MODEL).model_gone(NEW_MODEL).run(capsys)
    assert code == 1
    assert line.startswith(MISMATCH) and "cannot replace or add an instance" in line


@pytest.mark.parametrize("status", ["Updating", "SystemUpdating"])
def test_an_update_under_way_is_not_mistaken_for_a_rollback(capsys, status):
    """Mid-update, DescribeEndpoint still names the old config: advising a redeploy would start another
    blue/green deployment."""
    code, line = Account().stack_names(NEW_CONFIG).endpoint(OLD_CONFIG, status=status).run(capsys)
    assert code == 2
    assert line.startswith(CANNOT_CHECK) and f"is {status}: check again when it is InService" in line
    assert "Deploy the previous" not in line


def test_a_failed_endpoint_is_a_mismatch(capsys):
    code, line = (
        Account().stack_names(NEW_CONFIG).endpoint(NEW_CONFIG, status="Failed", reason="quota").run(capsys)
    )
    assert code == 1
    assert line.startswith(MISMATCH) and "is Failed, not InService (SageMaker: quota)" in line


def test_a_refusal_is_cannot_check_with_aws_reason(capsys):
    account = Account()
    account.cloudformation.add_client_error(
        "describe_stack_resources",
        service_error_code="AccessDenied",
        service_message="not authorized to perform: cloudformation:DescribeStackResources",
        expected_params={"StackName": STACK},
    )
    code, line = account.run(capsys)
    assert code == 2
    assert line.startswith(CANNOT_CHECK) and "cloudformation:DescribeStackResources" in line


def test_no_region_is_one_line_and_exit_code_2(capsys, monkeypatch):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    session = boto3.Session(**KEYS)
    assert main(["--stage", "prod"], session=session) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["deploy-check: no AWS region: set AWS_REGION, give AWS_PROFILE a region, or pass --region"]
