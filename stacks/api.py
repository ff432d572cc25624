"""API: the prediction Lambda (lambda/), allowed to invoke one endpoint, behind an IAM Function URL."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.alarm_topic import alarm_destinations
from stacks.constructs.api_alarms import ApiAlarms, ApiAlarmsProps
from stacks.constructs.log_group import LogGroupProps
from stacks.constructs.prediction_function import ALIAS_NAME, PredictionFunction, PredictionFunctionProps

FUNCTION_URL_HOST_OUTPUT = "FunctionUrlHost"


class ApiStack(Stack):
    """The public face of the model: an IAM-authenticated Function URL on the ``live`` alias.

    Its alarms notify ``alarm_topic``, the serving stack's topic: one subscription for the stage.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        endpoint_name: str,
        endpoint_arn: str,
        key: kms.IKey,
        alarm_topic: sns.ITopic,
        inference_component_arn: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        api = PredictionFunction(
            self,
            "Prediction",
            props=PredictionFunctionProps(
                stage=config.stage,
                described_endpoint=config.endpoint_name,
                component_name=config.served_component_name,
                memory_mb=config.lambda_memory_mb,
                timeout_seconds=config.lambda_timeout_seconds,
                reserved_concurrency=config.lambda_reserved_concurrency,
                provisioned_concurrency=config.lambda_provisioned_concurrency,
                provisioned_concurrency_max=config.lambda_provisioned_concurrency_max,
                autoscaled=config.provisioned_concurrency_autoscaling,
                provisioned_utilization_target=config.lambda_provisioned_utilization_target,
                endpoint_connect_timeout_seconds=config.endpoint_connect_timeout_seconds,
                endpoint_read_timeout_seconds=config.endpoint_read_timeout_seconds,
                endpoint_max_attempts=config.endpoint_max_attempts,
                max_image_bytes=config.max_image_bytes,
                logs=LogGroupProps(retention_days=config.log_retention_days, retained=config.production),
            ),
            endpoint_name=endpoint_name,
            endpoint_arn=endpoint_arn,
            inference_component_arn=inference_component_arn,
            key=key,
        )
        self.function = api.function
        self.alias = api.alias
        self.alarms = ApiAlarms(
            self,
            "Alarms",
            props=ApiAlarmsProps(
                endpoint_name=config.endpoint_name,
                reserved_concurrency=config.lambda_reserved_concurrency,
                provisioned_concurrency=config.lambda_provisioned_concurrency,
                provisioned_concurrency_max=config.lambda_provisioned_concurrency_max,
            ),
            function=api.function,
            alias=api.alias,
            destinations=alarm_destinations(self, alarm_topic, team_topic_arn=config.alarm_topic_arn),
        )
        CfnOutput(
            self, "FunctionUrl", value=api.url.url, description="POST an image here (SigV4, service lambda)"
        )
        if config.front_door_enabled:
            # The origin of the front door's distribution (stacks/front_door.py), read as a plain output:
            # CloudFormation documents no Fn::Split over another stack's output.
            CfnOutput(
                self,
                FUNCTION_URL_HOST_OUTPUT,
                value=api.url_host,
                description="The Function URL's host name (the front door's API origin)",
            )
        CfnOutput(self, "FunctionName", value=api.function.function_name, description="Prediction Lambda")
        CfnOutput(
            self, "AliasName", value=ALIAS_NAME, description="Alias that carries provisioned concurrency"
        )
