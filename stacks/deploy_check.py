"""After a deploy: does the endpoint run what the serving stack says it runs?

    make deploy-check STAGE=prod
    python -m stacks.deploy_check --stage prod [--region eu-west-1]

When an alarm fires during a blue/green bake, SageMaker returns the endpoint to its old EndpointConfig.
How CloudFormation's handler reports that is not documented (docs/infrastructure.md, "After a SageMaker
auto-rollback"): if it reported success, the stack's cleanup would have deleted the old Model and artifact
grant the endpoint still runs on. This check says which it was, from SageMaker's own answer:

* ``OK``: the endpoint is ``InService`` on the EndpointConfig the stack created, and that config's model
  exists.
* ``MISMATCH``: the endpoint runs another config (SageMaker rolled the deployment back, with its
  ``FailureReason``), has failed, or its model is gone. Each line says what to do.
* ``CANNOT CHECK``: an update is still under way, or AWS refused or was unreachable (the reason is
  printed).

Exit status: 1 on a mismatch, else 2 when something could not be checked, else 0. IAM permissions it uses:
cloudformation:DescribeStackResources, sagemaker:DescribeEndpoint, sagemaker:DescribeEndpointConfig,
sagemaker:DescribeModel.
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
# EndpointStatus values of an operation still under way (API_DescribeEndpoint.html).
IN_PROGRESS = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})


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


def stack_endpoint_config(config: StageConfig, cloudformation: Any) -> str:
    """The physical name of the EndpointConfig the serving stack holds now."""
    stack = f"{config.stack_prefix}-serving"
    resources = cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
    names = [
        r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::SageMaker::EndpointConfig"
    ]
    if len(names) != 1:
        raise LookupError(f"{stack} holds {len(names)} AWS::SageMaker::EndpointConfig resources, not one")
    return names[0]


def check_endpoint(config: StageConfig, clients: Clients) -> Result:
    expected = stack_endpoint_config(config, clients.cloudformation)
    endpoint = clients.sagemaker.describe_endpoint(EndpointName=config.endpoint_name)
    status = endpoint["EndpointStatus"]
    running = endpoint["EndpointConfigName"]
    reason = endpoint.get("FailureReason")
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
            f"{config.endpoint_name} is {status}, not InService"
            + (f" (SageMaker: {reason})" if reason else "")
            + ": see the endpoint's log group and the serving stack's events",
        )
    if running != expected:
        because = f" (SageMaker: {reason})" if reason else ""
        return Result(
            MISMATCH,
            CHECK,
            f"{config.endpoint_name} runs {running}, the stack names {expected}: SageMaker rolled the "
            f"deployment back{because} while CloudFormation kept the new model. Deploy the previous "
            f"{_model_key(config)} again, so the stack recreates the model and artifact grant the endpoint "
            "runs on",
        )
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


def _model_key(config: StageConfig) -> str:
    """What names the stage's model, as the user changes it."""
    if config.model_from_package:
        return "model_package_arn (revert the promotion's cdk.json change)"
    return "model_data_url"


def exit_code(result: Result) -> int:
    return {OK: 0, MISMATCH: 1}.get(result.status, 2)


def main(
    argv: Sequence[str] | None = None, session: boto3.Session | None = None, clients: Clients | None = None
) -> int:
    """Print the check's line; return the exit status. ``session``/``clients`` are for tests."""
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
    result = guarded(CHECK, lambda: check_endpoint(config, clients))
    print(result.line())
    return exit_code(result)


if __name__ == "__main__":
    sys.exit(main())
