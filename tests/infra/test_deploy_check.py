"""`make deploy-check`: after a deploy, the endpoint runs the EndpointConfig the serving stack names, and
in inference_component mode (dev in cdk.json) the component runs the stack's Model.

Real botocore clients with botocore's Stubber, so every request (and every stubbed answer) is checked
against the service model. The cases that matter are the ones no document settles (docs/infrastructure.md,
"After a SageMaker auto-rollback"): SageMaker rolled the deployment (or the component's rolling update)
back and the stack kept the new model.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from stacks.config import StageConfig
from stacks.deploy_check import MISMATCH, Clients, main
from stacks.model_environment import stage_config_from_cdk_json
from stacks.preflight import CANNOT_CHECK, OK

REGION = "eu-west-1"
NEW_CONFIG = "ConfigEndpointConfig-NEW0123456789"
OLD_CONFIG = "ConfigEndpointConfig-OLD0123456789"
NEW_MODEL = "ModelModel-NEW0123456789"
OLD_MODEL = "ModelModel-OLD0123456789"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
ACCOUNT_ARN = f"arn:aws:sagemaker:{REGION}:111122223333"


# Stubbed clients still sign their requests, so the session needs some (never used) keys.
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class Account:
    """One stubbed account for ``stage`` (prod: instance mode; dev: inference_component, as in cdk.json)."""

    def __init__(self, stage: str = "prod") -> None:
        self.stage = stage
        self.endpoint_name = f"dogbreed-{stage}"
        self.clients = Clients.from_session(boto3.Session(region_name=REGION, **KEYS), REGION)
        self.cloudformation = Stubber(self.clients.cloudformation)
        self.sagemaker = Stubber(self.clients.sagemaker)
        self.cloudformation.activate()
        self.sagemaker.activate()

    @property
    def stack(self) -> str:
        return f"dogbreed-{self.stage}-serving"

    @property
    def arn(self) -> str:
        return f"{ACCOUNT_ARN}:endpoint/{self.endpoint_name}"

    def stack_names(self, config_name: str, model: str = NEW_MODEL) -> Account:
        resource = {"LogicalResourceId": "ConfigEndpointConfig1234", "PhysicalResourceId": config_name,
                    "ResourceType": "AWS::SageMaker::EndpointConfig", "Timestamp": NOW,
                    "ResourceStatus": "UPDATE_COMPLETE"}  # fmt: skip
        model_resource = {**resource, "LogicalResourceId": "ModelModel1234", "PhysicalResourceId": model,
                          "ResourceType": "AWS::SageMaker::Model"}  # fmt: skip
        component = {**resource, "LogicalResourceId": "ComponentComponent1234",
                     "PhysicalResourceId": f"{ACCOUNT_ARN}:inference-component/{self.endpoint_name}-model",
                     "ResourceType": "AWS::SageMaker::InferenceComponent"}  # fmt: skip
        resources = [resource, model_resource] + ([component] if self.stage == "dev" else [])
        self.cloudformation.add_response(
            "describe_stack_resources", {"StackResources": resources}, {"StackName": self.stack}
        )
        return self

    def endpoint(self, config_name: str, status: str = "InService", reason: str | None = None) -> Account:
        answer = {"EndpointName": self.endpoint_name, "EndpointArn": self.arn,
                  "EndpointConfigName": config_name, "EndpointStatus": status, "CreationTime": NOW,
                  "LastModifiedTime": NOW}  # fmt: skip
        if reason:
            answer["FailureReason"] = reason
        self.sagemaker.add_response("describe_endpoint", answer, {"EndpointName": self.endpoint_name})
        return self

    def component(
        self, model: str, status: str = "InService", copies: int | None = 1, reason: str | None = None
    ) -> Account:
        name = f"{self.endpoint_name}-model"
        answer: dict[str, Any] = {
            "InferenceComponentName": name,
            "InferenceComponentArn": f"{ACCOUNT_ARN}:inference-component/{name}",
            "EndpointName": self.endpoint_name,
            "EndpointArn": self.arn,
            "VariantName": "AllTraffic",
            "Specification": {"ModelName": model},
            "InferenceComponentStatus": status,
            "CreationTime": NOW,
            "LastModifiedTime": NOW,
        }
        if copies is not None:
            answer["RuntimeConfig"] = {"DesiredCopyCount": copies, "CurrentCopyCount": copies}
        if reason:
            answer["FailureReason"] = reason
        self.sagemaker.add_response("describe_inference_component", answer, {"InferenceComponentName": name})
        return self

    def config_model(self, config_name: str, model: str) -> Account:
        self.sagemaker.add_response(
            "describe_endpoint_config",
            {
                "EndpointConfigName": config_name,
                "EndpointConfigArn": f"{ACCOUNT_ARN}:endpoint-config/{config_name.lower()}",
                "CreationTime": NOW,
                "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": model}],
            },
            {"EndpointConfigName": config_name},
        )
        return self

    def model_exists(self, model: str) -> Account:
        self.sagemaker.add_response(
            "describe_model",
            {"ModelName": model, "ModelArn": f"{ACCOUNT_ARN}:model/{model.lower()}", "CreationTime": NOW},
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

    def run_lines(self, capsys) -> tuple[int, list[str]]:
        code = main(["--stage", self.stage, "--region", REGION], clients=self.clients)
        self.cloudformation.assert_no_pending_responses()
        self.sagemaker.assert_no_pending_responses()
        return code, capsys.readouterr().out.strip().splitlines()

    def run(self, capsys) -> tuple[int, str]:
        """The one line of a check that prints one (instance mode, or an endpoint that is not OK)."""
        code, [line] = self.run_lines(capsys)
        return code, line


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
        expected_params={"StackName": account.stack},
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


def test_a_stack_that_names_its_config_by_arn_matches_the_endpoints_config_name(capsys):
    """CloudFormation documents the Ref (the physical id) of an EndpointConfig as its ARN, whose name part
    SageMaker lower-cases; DescribeEndpoint answers the name."""
    config_arn = f"{ACCOUNT_ARN}:endpoint-config/{NEW_CONFIG.lower()}"
    account = Account().stack_names(config_arn).endpoint(NEW_CONFIG)
    account.config_model(NEW_CONFIG, NEW_MODEL).model_exists(NEW_MODEL)
    code, line = account.run(capsys)
    assert code == 0 and line.startswith(OK)


# --- inference_component mode (dev) ----------------------------------------------------------------------


def test_a_component_on_the_stacks_model_is_ok_with_its_copy_count(capsys):
    # No DescribeEndpointConfig/DescribeModel: the variant has no model, the component names it.
    account = Account("dev").stack_names(NEW_CONFIG).endpoint(NEW_CONFIG).component(NEW_MODEL, copies=2)
    code, lines = account.run_lines(capsys)
    assert code == 0
    assert lines == [
        f"{OK:<12} endpoint: dogbreed-dev is InService on {NEW_CONFIG}",
        f"{OK:<12} inference component: dogbreed-dev-model is InService on {NEW_MODEL} (2 copies)",
    ]


def test_an_idle_component_with_no_copy_is_ok_and_says_it_scaled_to_zero(capsys):
    account = Account("dev").stack_names(NEW_CONFIG).endpoint(NEW_CONFIG).component(NEW_MODEL, copies=0)
    code, lines = account.run_lines(capsys)
    assert code == 0
    assert lines[1].startswith(OK) and "0 copies: scaled to zero" in lines[1]


def test_no_copy_without_autoscaling_is_not_called_idle(capsys, monkeypatch):
    import stacks.deploy_check

    def without_autoscaling(stage: str, **kwargs: Any) -> StageConfig:
        return dataclasses.replace(stage_config_from_cdk_json(stage, **kwargs), autoscaling_enabled=False)

    monkeypatch.setattr(stacks.deploy_check, "stage_config_from_cdk_json", without_autoscaling)
    account = Account("dev").stack_names(NEW_CONFIG).endpoint(NEW_CONFIG).component(NEW_MODEL, copies=0)
    code, lines = account.run_lines(capsys)
    assert code == 0
    assert (
        "with autoscaling_enabled false nothing starts one" in lines[1] and "scaled to zero" not in lines[1]
    )


def test_a_rolling_update_sagemaker_rolled_back_under_a_successful_stack_is_a_mismatch(capsys):
    reason = "Rolling update rolled back: alarm dogbreed-dev-ModelLatencyP99 in ALARM"
    account = Account("dev").stack_names(NEW_CONFIG, model=NEW_MODEL).endpoint(NEW_CONFIG)
    code, lines = account.component(OLD_MODEL, reason=reason).run_lines(capsys)
    assert code == 1
    assert lines[0].startswith(OK)  # the endpoint is untouched by a model update in this mode
    component = lines[1]
    assert component.startswith(MISMATCH)
    assert f"dogbreed-dev-model runs {OLD_MODEL}, the stack names {NEW_MODEL}" in component
    assert "rolled the component's update back" in component and reason in component
    # dev serves a model_data_url: the way back is the previous URL.
    assert "Deploy the previous model_data_url again" in component


def test_a_stack_that_names_its_model_by_arn_matches_the_components_model_name(capsys):
    model_arn = f"{ACCOUNT_ARN}:model/{NEW_MODEL.lower()}"
    account = Account("dev").stack_names(NEW_CONFIG, model=model_arn).endpoint(NEW_CONFIG)
    code, lines = account.component(NEW_MODEL).run_lines(capsys)
    assert code == 0 and lines[1].startswith(OK) and "(1 copy)" in lines[1]


@pytest.mark.parametrize("status", ["Creating", "Updating", "Deleting"])
def test_a_component_under_way_is_not_mistaken_for_a_rollback(capsys, status):
    """Mid-update the component may name either model: advising a redeploy would start another update."""
    account = Account("dev").stack_names(NEW_CONFIG).endpoint(NEW_CONFIG)
    code, lines = account.component(OLD_MODEL, status=status).run_lines(capsys)
    assert code == 2
    assert lines[1].startswith(CANNOT_CHECK)
    assert f"dogbreed-dev-model is {status}: check again when it is InService" in lines[1]
    assert "Deploy the previous" not in lines[1]


def test_a_failed_component_is_a_mismatch_with_sagemakers_reason(capsys):
    account = Account("dev").stack_names(NEW_CONFIG).endpoint(NEW_CONFIG)
    reason = "Insufficient capacity for ml.g4dn.xlarge"
    code, lines = account.component(NEW_MODEL, status="Failed", copies=0, reason=reason).run_lines(capsys)
    assert code == 1
    assert lines[1].startswith(MISMATCH) and f"is Failed (SageMaker: {reason})" in lines[1]


def test_a_component_is_not_asked_about_while_the_endpoint_is_not_ok(capsys):
    # The stubber fails on any request not queued: no DescribeInferenceComponent is made.
    code, line = Account("dev").stack_names(NEW_CONFIG).endpoint(NEW_CONFIG, status="Updating").run(capsys)
    assert code == 2 and line.startswith(CANNOT_CHECK) and "endpoint: dogbreed-dev is Updating" in line


def test_an_endpoint_config_mismatch_in_component_mode_points_at_the_instance_settings(capsys):
    # This endpoint has no DeploymentConfig: its config changes only with the instance settings.
    code, line = Account("dev").stack_names(NEW_CONFIG).endpoint(OLD_CONFIG, reason="quota").run(capsys)
    assert code == 1
    assert line.startswith(MISMATCH) and f"runs {OLD_CONFIG}, the stack names {NEW_CONFIG}" in line
    assert "(SageMaker: quota)" in line and "previous instance settings" in line
    assert "model_data_url" not in line


def test_a_refused_component_description_is_cannot_check_after_the_endpoints_ok(capsys):
    account = Account("dev").stack_names(NEW_CONFIG).endpoint(NEW_CONFIG)
    account.sagemaker.add_client_error(
        "describe_inference_component",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform: sagemaker:DescribeInferenceComponent",
        expected_params={"InferenceComponentName": "dogbreed-dev-model"},
    )
    code, lines = account.run_lines(capsys)
    assert code == 2
    assert lines[0].startswith(OK)
    assert lines[1].startswith(CANNOT_CHECK) and "sagemaker:DescribeInferenceComponent" in lines[1]
