"""After a deploy: does the endpoint run what the serving stack says it runs?

    make deploy-check STAGE=prod
    python -m stacks.deploy_check --stage prod [--region eu-west-1]

When an alarm fires during a blue/green bake, SageMaker returns the endpoint to its old EndpointConfig; in
``inference_component`` mode, when one fires during the component's rolling update, SageMaker returns the
component to its old model. How CloudFormation's handlers report either is not documented
(docs/infrastructure.md, "After a SageMaker auto-rollback"): if they reported success, the stack's cleanup
would have deleted the old Model and artifact grant the endpoint (or component) still runs on. This check
says which it was, from SageMaker's own answer, one line per check:

* ``endpoint``: ``OK`` when the endpoint is ``InService`` on the EndpointConfig the stack created and (in
  instance and serverless mode) that config's model exists; ``MISMATCH`` when it runs another config
  (SageMaker rolled the deployment back, with its ``FailureReason``), has failed, or its model is gone;
  ``CANNOT CHECK`` while an update is under way.
* ``inference component`` (``inference_component`` mode, once the endpoint line is ``OK``): ``OK`` when the
  component is ``InService`` on the stack's Model, with its current copy count (0 is the idle stage scaled
  to zero); ``MISMATCH`` when it has failed or runs another model (SageMaker rolled the rolling update
  back); ``CANNOT CHECK`` while it is being created, updated or deleted.

Any check that AWS refused, or that could not reach AWS, is ``CANNOT CHECK`` with the reason. Each
``MISMATCH`` line says what to do. Exit status: 1 on a mismatch, else 2 when something could not be
checked, else 0. IAM permissions it uses: cloudformation:DescribeStackResources, sagemaker:DescribeEndpoint,
sagemaker:DescribeEndpointConfig, sagemaker:DescribeModel, sagemaker:DescribeInferenceComponent (the last
in inference_component mode only; DescribeEndpointConfig and DescribeModel in the other modes only).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from stacks.config import ConfigError, StageConfig
from stacks.model_environment import stage_config_from_cdk_json
from stacks.preflight import (
    CANNOT_CHECK,
    CLIENT_CONFIG,
    OK,
    PLACEHOLDER_MODEL_DATA_URL,
    Result,
    guarded,
    session_region,
)

MISMATCH = "MISMATCH"
CHECK = "endpoint"
COMPONENT_CHECK = "inference component"
ENDPOINT_CONFIG_TYPE = "AWS::SageMaker::EndpointConfig"
MODEL_TYPE = "AWS::SageMaker::Model"
# EndpointStatus values of an operation still under way (API_DescribeEndpoint.html).
IN_PROGRESS = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
# InferenceComponentStatus is InService, Creating, Updating, Failed or Deleting (botocore's sagemaker
# model); a rolling update and its rollback are both Updating.
COMPONENT_IN_PROGRESS = frozenset({"Creating", "Updating", "Deleting"})


@dataclass(frozen=True)
class Clients:
    cloudformation: Any
    sagemaker: Any

    @classmethod
    def from_session(cls, session: boto3.Session, region: str) -> Clients:
        return cls(
            session.client("cloudformation", region_name=region, config=CLIENT_CONFIG),
            session.client("sagemaker", region_name=region, config=CLIENT_CONFIG),
        )


@dataclass(frozen=True)
class StackResources:
    """The serving stack's physical resource ids by type, from one DescribeStackResources answer, so the
    endpoint and the component are compared with the same state of the stack."""

    stack: str
    physical_ids: dict[str, list[str]]

    @classmethod
    def describe(cls, config: StageConfig, cloudformation: Any) -> StackResources:
        stack = f"{config.stack_prefix}-serving"
        ids: dict[str, list[str]] = {}
        for resource in cloudformation.describe_stack_resources(StackName=stack)["StackResources"]:
            # A resource whose creation has not finished (or failed) has no physical id yet.
            if resource.get("PhysicalResourceId"):
                ids.setdefault(resource["ResourceType"], []).append(resource["PhysicalResourceId"])
        return cls(stack, ids)

    def one(self, resource_type: str) -> str:
        found = self.physical_ids.get(resource_type, [])
        if len(found) != 1:
            raise LookupError(f"{self.stack} holds {len(found)} {resource_type} resources, not one")
        return found[0]


def same_resource(physical_id: str, name: str) -> bool:
    """Whether a stack's physical id names the SageMaker resource SageMaker calls ``name``.

    The physical id is the resource's ``Ref``, which CloudFormation documents as the ARN for SageMaker's
    Model and EndpointConfig, while SageMaker's Describe answers give names; accept both forms. SageMaker
    lower-cases the name in an ARN, so names are unique whatever their case and compare without it.
    """
    if physical_id.startswith("arn:") and "/" in physical_id:
        physical_id = physical_id.split("/", 1)[1]
    return physical_id.lower() == name.lower()


def check_endpoint(config: StageConfig, clients: Clients, stack: StackResources) -> Result:
    expected = stack.one(ENDPOINT_CONFIG_TYPE)
    endpoint = clients.sagemaker.describe_endpoint(EndpointName=config.endpoint_name)
    status = endpoint["EndpointStatus"]
    running = endpoint["EndpointConfigName"]
    reason = endpoint.get("FailureReason")
    because = f" (SageMaker: {reason})" if reason else ""
    # While an update runs, DescribeEndpoint still names the old config (the new one is pending): only an
    # endpoint at rest says which config SageMaker settled on.
    if status in IN_PROGRESS:
        return Result(
            CANNOT_CHECK, CHECK, f"{config.endpoint_name} is {status}: check again when it is InService"
        )
    if status != "InService":
        return Result(
            MISMATCH,
            CHECK,
            f"{config.endpoint_name} is {status}, not InService{because}: see the endpoint's log group and "
            "the serving stack's events",
        )
    if not same_resource(expected, running) and config.is_inference_component:
        # No DeploymentConfig here: the config changes only with the instance settings, and a new model is
        # the component's business. SageMaker kept the old config, which the stack may have cleaned up.
        return Result(
            MISMATCH,
            CHECK,
            f"{config.endpoint_name} runs {running}, the stack names {expected}: the endpoint's update to "
            f"the new config did not take{because}. See the serving stack's events, then deploy the "
            "previous instance settings (instance_type, min_instances, max_instances) again, so the stack "
            "names the config the endpoint runs",
        )
    if not same_resource(expected, running):
        return Result(
            MISMATCH,
            CHECK,
            f"{config.endpoint_name} runs {running}, the stack names {expected}: SageMaker rolled the "
            f"deployment back{because} while CloudFormation kept the new model. Deploy the previous "
            f"{_model_key(config)} again, so the stack recreates the model and artifact grant the endpoint "
            "runs on",
        )
    if config.is_inference_component:
        # The variant has no model: the component's check (below) compares the model.
        return Result(OK, CHECK, f"{config.endpoint_name} is InService on {running}")
    model = clients.sagemaker.describe_endpoint_config(EndpointConfigName=running)["ProductionVariants"][0][
        "ModelName"
    ]
    try:
        clients.sagemaker.describe_model(ModelName=model)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ValidationException":
            raise
        return Result(
            MISMATCH,
            CHECK,
            f"{config.endpoint_name} runs {running}, whose model {model} no longer exists: the endpoint "
            f"cannot replace or add an instance. Deploy the {_model_key(config)} it should run again",
        )
    return Result(OK, CHECK, f"{config.endpoint_name} is InService on {running} (model {model})")


def check_component(config: StageConfig, clients: Clients, stack: StackResources) -> Result:
    """inference_component mode: the component runs the stack's Model.

    A rolling update that an alarm rolled back leaves the component on the old model while the stack names
    the new one; the endpoint itself is untouched, so its check cannot see it.
    """
    expected = stack.one(MODEL_TYPE)
    name = config.inference_component_name
    component = clients.sagemaker.describe_inference_component(InferenceComponentName=name)
    status = component.get("InferenceComponentStatus")
    reason = component.get("FailureReason")
    because = f" (SageMaker: {reason})" if reason else ""
    if status == "Failed":
        return Result(
            MISMATCH,
            COMPONENT_CHECK,
            f"{name} is Failed{because}: see the component's logs and the serving stack's events",
        )
    # Mid-update the specification may already name the new model while old copies still serve (and a
    # rollback is Updating too): only a component at rest says which model SageMaker settled on.
    if status != "InService":
        state = status if status in COMPONENT_IN_PROGRESS else f"in status {status!r}"
        return Result(CANNOT_CHECK, COMPONENT_CHECK, f"{name} is {state}: check again when it is InService")
    running = component.get("Specification", {}).get("ModelName")
    if running is None:
        return Result(CANNOT_CHECK, COMPONENT_CHECK, f"DescribeInferenceComponent names no model for {name}")
    if not same_resource(expected, running):
        return Result(
            MISMATCH,
            COMPONENT_CHECK,
            f"{name} runs {running}, the stack names {expected}: SageMaker rolled the component's update "
            f"back{because} while CloudFormation kept the new model. Deploy the previous "
            f"{_model_key(config)} again, so the stack recreates the model and artifact grant the "
            "component runs on (once the cleanup has deleted them, no copy can start, not even from zero)",
        )
    copies = component.get("RuntimeConfig", {}).get("CurrentCopyCount")
    if copies is None:
        count = "copy count not reported"
    elif copies == 0 and config.autoscaling_enabled:
        # The idle rule took every copy (and SageMaker the instances): the next request starts one.
        count = "0 copies: scaled to zero while idle, the next request starts one"
    elif copies == 0:
        # Without a scalable target no rule changes the count the stack created (1): someone set it.
        count = "0 copies, and with autoscaling_enabled false nothing starts one"
    else:
        count = f"{copies} cop{'y' if copies == 1 else 'ies'}"
    return Result(OK, COMPONENT_CHECK, f"{name} is InService on {running} ({count})")


def _model_key(config: StageConfig) -> str:
    """What names the stage's model, as the user changes it."""
    if config.model_from_package:
        return "model_package_arn (revert the promotion's cdk.json change)"
    return "model_data_url"


def run_checks(config: StageConfig, clients: Clients) -> list[Result]:
    """The endpoint's line; in inference_component mode, the component's once the endpoint is OK (on a
    stale or failed endpoint the component's state says nothing new)."""
    described: list[StackResources] = []

    def endpoint() -> Result:
        described.append(StackResources.describe(config, clients.cloudformation))
        return check_endpoint(config, clients, described[0])

    results = [guarded(CHECK, endpoint)]
    if config.is_inference_component and results[0].status == OK:
        results.append(guarded(COMPONENT_CHECK, lambda: check_component(config, clients, described[0])))
    return results


def exit_code(results: Sequence[Result]) -> int:
    statuses = {r.status for r in results}
    if MISMATCH in statuses:
        return 1
    return 2 if statuses - {OK} else 0


def main(
    argv: Sequence[str] | None = None, session: boto3.Session | None = None, clients: Clients | None = None
) -> int:
    """Print the checks' lines; return the exit status. ``session``/``clients`` are for tests."""
    parser = argparse.ArgumentParser(
        prog="python -m stacks.deploy_check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--stage", required=True, help="a stage of cdk.json (dev, prod)")
    parser.add_argument(
        "--region", help="default: AWS_REGION, else AWS_DEFAULT_REGION or the profile's region"
    )
    args = parser.parse_args(argv)
    try:
        config = stage_config_from_cdk_json(args.stage, model_data_url=PLACEHOLDER_MODEL_DATA_URL)
    except ConfigError as exc:
        print(f"deploy-check: config error: {exc}", file=sys.stderr)
        return 2
    if clients is None:
        resolved = session_region(args.region, session, tool="deploy-check")
        if isinstance(resolved, int):
            return resolved
        clients = Clients.from_session(*resolved)
    results = run_checks(config, clients)
    for result in results:
        print(result.line())
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
