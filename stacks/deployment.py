"""Wires one stage's four stacks together and installs the security gate; app.py and the tests share it."""

from __future__ import annotations

import os
from dataclasses import dataclass

from aws_cdk import App, Environment, Tags, Validations
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks, ServerlessChecks

from stacks.api import ApiStack
from stacks.config import PROJECT, StageConfig
from stacks.serving import ServingStack
from stacks.storage import StorageStack
from stacks.training import TrainingStack


@dataclass(frozen=True)
class StageStacks:
    storage: StorageStack
    training: TrainingStack
    serving: ServingStack
    api: ApiStack

    def all(self) -> tuple:
        return (self.storage, self.training, self.serving, self.api)


def deploy_environment() -> Environment:
    """The account/region the CLI resolved from the user's credentials, if any.

    Without credentials (offline synth, CI) both are None and the stacks are environment-agnostic: every
    region-dependent value (DLC account, AZs, DLAMI id) is then resolved by CloudFormation at deploy time.
    """
    return Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )


def add_stage(app: App, config: StageConfig, env: Environment | None = None) -> StageStacks:
    env = env or deploy_environment()
    prefix = config.stack_prefix
    storage = StorageStack(
        app,
        f"{prefix}-storage",
        config=config,
        env=env,
        description=f"dogbreed {config.stage}: KMS key and bucket",
    )
    training = TrainingStack(
        app,
        f"{prefix}-training",
        config=config,
        artifacts=storage.artifacts,
        key=storage.key,
        env=env,
        description=f"dogbreed {config.stage}: SageMaker training role and launcher outputs",
    )
    serving = ServingStack(
        app,
        f"{prefix}-serving",
        config=config,
        artifacts=storage.artifacts,
        key=storage.key,
        env=env,
        description=f"dogbreed {config.stage}: SageMaker model, endpoint, autoscaling, alarms",
    )
    api = ApiStack(
        app,
        f"{prefix}-api",
        config=config,
        endpoint_name=serving.endpoint_name,
        endpoint_arn=serving.endpoint_arn,
        key=storage.key,
        alarm_topic=serving.alarm_topic,
        env=env,
        description=f"dogbreed {config.stage}: prediction Lambda and Function URL",
    )
    # The bucket is referenced by its derived name (see ArtifactBucket), so state the deploy order.
    training.add_stack_dependency(storage)
    serving.add_stack_dependency(storage)
    stacks = StageStacks(storage=storage, training=training, serving=serving, api=api)
    for stack in stacks.all():
        Tags.of(stack).add("project", PROJECT)
        Tags.of(stack).add("stage", config.stage)
    return stacks


def add_security_gate(app: App) -> None:
    """cdk-nag 3: every synth fails on a finding that is not acknowledged next to its resource."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), NIST80053R5Checks(app), ServerlessChecks(app))
