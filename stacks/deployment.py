"""Wires one stage's stacks together and installs the security gate; app.py and the tests share it."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import App, Fn, Stack, Tags, Validations
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks, ServerlessChecks

from stacks.api import FUNCTION_URL_HOST_OUTPUT, ApiStack
from stacks.config import CLOUDFRONT_REGION, PROJECT, StageConfig
from stacks.edge import ALARM_TOPIC_ARN_OUTPUT, WEB_ACL_ARN_OUTPUT, EdgeStack
from stacks.front_door import FrontDoorStack
from stacks.serving import ServingStack
from stacks.storage import StorageStack
from stacks.training import TrainingStack


@dataclass(frozen=True)
class StageStacks:
    storage: StorageStack
    training: TrainingStack
    serving: ServingStack
    api: ApiStack
    # With front_door_enabled only: the us-east-1 web ACL and the distribution in the stage's region.
    edge: EdgeStack | None = None
    front_door: FrontDoorStack | None = None

    def by_kind(self) -> dict[str, Stack]:
        stacks = {
            "storage": self.storage,
            "training": self.training,
            "serving": self.serving,
            "api": self.api,
            "edge": self.edge,
            "frontdoor": self.front_door,
        }
        return {kind: stack for kind, stack in stacks.items() if stack is not None}

    def all(self) -> tuple[Stack, ...]:
        return tuple(self.by_kind().values())


def add_stage(app: App, config: StageConfig) -> StageStacks:
    """The stage's stacks, environment-agnostic whatever the CLI resolved (but the us-east-1 edge stack).

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
    edge = front_door = None
    if config.front_door_enabled:
        edge = EdgeStack(
            app,
            f"{prefix}-edge",
            config=config,
            description=f"dogbreed {config.stage}: front door WAF web ACL, its logs and alarm (us-east-1)",
        )
        front_door = FrontDoorStack(
            app,
            f"{prefix}-frontdoor",
            config=config,
            api_host=Fn.get_stack_output(api.stack_name, FUNCTION_URL_HOST_OUTPUT),
            api_function_arn=api.alias.function_arn,
            web_acl_arn=Fn.get_stack_output(edge.stack_name, WEB_ACL_ARN_OUTPUT, region=CLOUDFRONT_REGION),
            edge_alarm_topic_arn=Fn.get_stack_output(
                edge.stack_name, ALARM_TOPIC_ARN_OUTPUT, region=CLOUDFRONT_REGION
            ),
            alarm_topic=serving.alarm_topic,
            key=storage.key,
            description=f"dogbreed {config.stage}: CloudFront distribution, web page and its bucket",
        )
        # Fn::GetStackOutput reads are no references CDK can see: state the order.
        front_door.add_stack_dependency(edge)
        front_door.add_stack_dependency(api)
        front_door.add_stack_dependency(serving)
    stacks = StageStacks(
        storage=storage, training=training, serving=serving, api=api, edge=edge, front_door=front_door
    )
    for stack in stacks.all():
        Tags.of(stack).add("project", PROJECT)
        Tags.of(stack).add("stage", config.stage)
    return stacks


def add_security_gate(app: App) -> None:
    """cdk-nag 3: every synth fails on a finding that is not acknowledged next to its resource."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), NIST80053R5Checks(app), ServerlessChecks(app))
