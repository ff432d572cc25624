"""API: the prediction Lambda (lambda/), allowed to invoke one endpoint, behind an IAM Function URL."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, CfnOutput, Duration, Fn, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.api_alarms import ApiAlarms
from stacks.constructs.log_group import stage_log_group, write_logs_statement

LAMBDA_SOURCE = Path(__file__).resolve().parent.parent / "lambda"
# Only the handler's sources are deployed: no caches, tests or local tooling.
LAMBDA_EXCLUDES = ["__pycache__", "*.pyc", "tests", "test_*.py", ".pytest_cache", "*.md"]
ALIAS_NAME = "live"
FUNCTION_URL_HOST_OUTPUT = "FunctionUrlHost"
RUNTIME_REASON = (
    "Pinned to python3.13, the runtime the handler and its tests target (project toolchain Python 3.11+); "
    "a runtime upgrade is a deliberate change made together with the handler's tests, not an implicit one."
)

NO_ASYNC_REASON = (
    "The function is only invoked synchronously (Function URL / RequestResponse); it has no asynchronous "
    "invocations or event source mappings whose failures a DLQ or destination would catch."
)


class PredictionFunction(Construct):
    """The Lambda, its log group and role, the ``live`` alias (provisioned concurrency), the Function URL."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        endpoint_name: str,
        endpoint_arn: str,
        inference_component_arn: str | None,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = stage_log_group(self, "LogGroup", config=config, key=key)
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"dogbreed {config.stage}: prediction API",
        )
        # Everything the function may do, in one customer-managed policy; the role handed to the function is
        # immutable, so nothing (not even tracing=ACTIVE) can widen it behind this policy's back.
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            roles=[role],
            statements=[
                # The one permission that matters: invoke this endpoint, by the ARN the service reports, and
                # where it hosts the model as an inference component, that component (an optional resource
                # type of InvokeEndpoint: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemaker.html).
                iam.PolicyStatement(
                    sid="InvokeThisEndpointOnly",
                    actions=["sagemaker:InvokeEndpoint"],
                    resources=[endpoint_arn, *([inference_component_arn] if inference_component_arn else [])],
                ),
                write_logs_statement(self.log_group),
                iam.PolicyStatement(
                    sid="WriteTraces",
                    actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                    resources=["*"],
                ),
            ],
        )
        Validations.of(self.policy).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="X-Ray PutTraceSegments/PutTelemetryRecords (tracing=ACTIVE) have no resource-level "
                "permissions and require '*'.",
            ),
        )
        self.role = role.without_policy_updates()

        self.function = lambda_.Function(
            self,
            "Function",
            description=f"dogbreed {config.stage}: classify a dog photo with {config.endpoint_name}",
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(LAMBDA_SOURCE), exclude=LAMBDA_EXCLUDES),
            role=self.role,
            memory_size=config.lambda_memory_mb,
            timeout=Duration.seconds(config.lambda_timeout_seconds),
            reserved_concurrent_executions=config.lambda_reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            # Text: the handler writes one JSON object per request line itself (``_log``), and Lambda sends
            # print/stdout output as plain text whatever the format; the JSON format would only wrap the
            # platform lines and leave the application's own untouched
            # (https://docs.aws.amazon.com/lambda/latest/dg/python-logging.html). Logs Insights reads the
            # handler's JSON fields either way.
            environment={
                "ENDPOINT_NAME": endpoint_name,
                **(
                    {"INFERENCE_COMPONENT_NAME": config.inference_component_name}
                    if inference_component_arn
                    else {}
                ),
                # Timeout budget (see StageConfig.lambda_timeout_seconds): the Lambda timeout is
                # attempts x (connect + read) + botocore backoff + margin, and read <= 60 s, SageMaker's
                # real-time invoke limit, which the model server timeout also matches.
                "ENDPOINT_CONNECT_TIMEOUT_SECONDS": str(config.endpoint_connect_timeout_seconds),
                "ENDPOINT_READ_TIMEOUT_SECONDS": str(config.endpoint_read_timeout_seconds),
                "ENDPOINT_MAX_ATTEMPTS": str(config.endpoint_max_attempts),
                "MAX_IMAGE_BYTES": str(config.max_image_bytes),
            },
        )
        # Attach the policy before the function exists, so its first invocation can already call the endpoint.
        # Function adds a DependsOn on its role, redundant with the GetAtt (cfn-lint W3005): state the one
        # dependency that matters instead.
        cfn_function = self.function.node.default_child
        cfn_function.add_override(
            "DependsOn", [Stack.of(self).get_logical_id(self.policy.node.default_child)]
        )
        # Provisioned concurrency has one owner. Autoscaled, Application Auto Scaling alone sets it (its
        # minimum is the floor it keeps): were the alias to carry ProvisionedConcurrencyConfig as well, every
        # code change would write the template's value back over the autoscaled one, and a new version that
        # fails to initialize would leave the alias in a state later deploys reject (aws-cdk #29992, #30503).
        # Not autoscaled, the alias carries the fixed value.
        autoscaled = config.provisioned_concurrency_autoscaling
        self.alias = lambda_.Alias(
            self,
            "LiveAlias",
            alias_name=ALIAS_NAME,
            version=self.function.current_version,
            provisioned_concurrent_executions=None
            if autoscaled
            else (config.lambda_provisioned_concurrency or None),
        )
        if autoscaled:
            scaling = self.alias.add_auto_scaling(
                min_capacity=max(config.lambda_provisioned_concurrency, 1),
                max_capacity=config.lambda_provisioned_concurrency_max,
            )
            scaling.scale_on_utilization(utilization_target=config.lambda_provisioned_utilization_target)
        self.url = self.alias.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)
        # https://<url-id>.lambda-url.<region>.on.aws/ -> its host name, a CloudFront origin's domain.
        self.url_host = Fn.select(2, Fn.split("/", self.url.url))

        Validations.of(self.function).acknowledge(
            Acknowledgment(id="Serverless-LambdaDLQ", reason=NO_ASYNC_REASON),
            Acknowledgment(id="NIST.800.53.R5-LambdaDLQ", reason=NO_ASYNC_REASON),
            Acknowledgment(id="Serverless-LambdaAsyncFailureDestination", reason=NO_ASYNC_REASON),
            Acknowledgment(
                id="NIST.800.53.R5-LambdaInsideVPC",
                reason="The function reaches only the SageMaker runtime and CloudWatch over AWS's TLS "
                "endpoints with SigV4; it touches no private network resource, and a VPC would add "
                "interface endpoints (cost) without narrowing what it can reach beyond its IAM policy.",
            ),
        )
        Validations.of(self.function).acknowledge(
            Acknowledgment(id="AwsSolutions-L1", reason=RUNTIME_REASON),
            Acknowledgment(id="Serverless-LambdaLatestVersion", reason=RUNTIME_REASON),
        )


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
            config=config,
            endpoint_name=endpoint_name,
            endpoint_arn=endpoint_arn,
            inference_component_arn=inference_component_arn,
            key=key,
        )
        self.function = api.function
        self.alias = api.alias
        self.alarms = ApiAlarms(
            self, "Alarms", config=config, function=api.function, alias=api.alias, topic=alarm_topic
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
