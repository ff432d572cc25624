"""Wires one stage's four stacks together and installs the security gate; app.py and the tests share it."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import App, Tags, Validations
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


def add_stage(app: App, config: StageConfig) -> StageStacks:
    """The stage's four stacks, environment-agnostic whatever the CLI resolved.

    The CLI sets CDK_DEFAULT_ACCOUNT/REGION from the user's credentials, and without credentials it still
    defaults the region to us-east-1. Stacks built from those would pin that region into the templates
    (Fn::GetStackOutput's Region, the asset bucket's name), and a template synthesized in one region would
    then deploy into another wrongly. Environment-agnostic stacks resolve every region-dependent value
    (DLC account, AZs, the region in ARNs) through pseudo parameters when CloudFormation deploys them, so
    one synthesized assembly is right in any region, and `cdk diff` in review shows the same template
    everyone deploys (https://docs.aws.amazon.com/cdk/v2/guide/configure-env.html). So no stack is given
    an ``env``.
    """
    prefix = config.stack_prefix
    storage = StorageStack(
        app,
        f"{prefix}-storage",
        config=config,
        description=f"dogbreed {config.stage}: KMS key and bucket",
    )
    training = TrainingStack(
        app,
        f"{prefix}-training",
        config=config,
        artifacts=storage.artifacts,
        key=storage.key,
        description=f"dogbreed {config.stage}: SageMaker training role and launcher outputs",
    )
    serving = ServingStack(
        app,
        f"{prefix}-serving",
        config=config,
        artifacts=storage.artifacts,
        key=storage.key,
        description=f"dogbreed {config.stage}: SageMaker model, endpoint, autoscaling, alarms",
    )
    api = ApiStack(
        app,
        f"{prefix}-api",
        config=config,
        endpoint_name=serving.endpoint_name,
        endpoint_arn=serving.endpoint_arn,
        inference_component_arn=serving.inference_component_arn,
        key=storage.key,
        alarm_topic=serving.alarm_topic,
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
