"""The prediction Lambda (lambda/, python3.13 on arm64): its log group and role, the ``live`` alias with
its provisioned concurrency, and the IAM Function URL on the alias."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Acknowledgment, Duration, Fn, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.constructs.log_group import LogGroupProps, stage_log_group, write_logs_statement

LAMBDA_SOURCE = Path(__file__).resolve().parents[2] / "lambda"
# Only the handler's sources are deployed: no caches, tests or local tooling.
LAMBDA_EXCLUDES = ["__pycache__", "*.pyc", "tests", "test_*.py", ".pytest_cache", "*.md"]
ALIAS_NAME = "live"
RUNTIME_REASON = (
    "Pinned to python3.13, the runtime the handler and its tests target (project toolchain Python 3.11+); "
    "a runtime upgrade is a deliberate change made together with the handler's tests, not an implicit one."
)

NO_ASYNC_REASON = (
    "The function is only invoked synchronously (Function URL / RequestResponse); it has no asynchronous "
    "invocations or event source mappings whose failures a DLQ or destination would catch."
)


@dataclass(frozen=True)
class PredictionFunctionProps:
    stage: str
    # The endpoint's name as the function's description shows it (ENDPOINT_NAME is the serving stack's
    # token, passed to the construct beside these props).
    described_endpoint: str
    # inference_component mode: the component the handler names (INFERENCE_COMPONENT_NAME); else None.
    component_name: str | None
    memory_mb: int
    # lambda_timeout_seconds, derived from the endpoint call's budget below.
    timeout_seconds: int
    reserved_concurrency: int
    # lambda_provisioned_concurrency, and its autoscaled maximum (equal: a fixed value, no autoscaling);
    # autoscaled is StageConfig.provisioned_concurrency_autoscaling, the one place that decides it.
    provisioned_concurrency: int
    provisioned_concurrency_max: int
    autoscaled: bool
    provisioned_utilization_target: float
    endpoint_connect_timeout_seconds: int
    endpoint_read_timeout_seconds: int
    endpoint_max_attempts: int
    max_image_bytes: int
    logs: LogGroupProps


class PredictionFunction(Construct):
    """The Lambda, its log group and role, the ``live`` alias (provisioned concurrency), the Function URL."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: PredictionFunctionProps,
        endpoint_name: str,
        endpoint_arn: str,
        inference_component_arn: str | None,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        if (props.component_name is None) != (inference_component_arn is None):
            # The handler names the component its role may invoke: one without the other is a wiring bug.
            raise ValueError("PredictionFunction: component_name and inference_component_arn go together")
        self.log_group = stage_log_group(self, "LogGroup", props=props.logs, key=key)
        # Not function_role(): that puts the log statement last, and this policy's order predates it (the
        # deployed policy document stays as it is).
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"dogbreed {props.stage}: prediction API",
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
            description=f"dogbreed {props.stage}: classify a dog photo with {props.described_endpoint}",
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(LAMBDA_SOURCE), exclude=LAMBDA_EXCLUDES),
            role=self.role,
            memory_size=props.memory_mb,
            timeout=Duration.seconds(props.timeout_seconds),
            reserved_concurrent_executions=props.reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            # Text: the handler writes one JSON object per request line itself (``_log``), and Lambda sends
            # print/stdout output as plain text whatever the format; the JSON format would only wrap the
            # platform lines and leave the application's own untouched
            # (https://docs.aws.amazon.com/lambda/latest/dg/python-logging.html). Logs Insights reads the
            # handler's JSON fields either way.
            environment={
                "ENDPOINT_NAME": endpoint_name,
                **({"INFERENCE_COMPONENT_NAME": props.component_name} if props.component_name else {}),
                # Timeout budget (see StageConfig.lambda_timeout_seconds): the Lambda timeout is
                # attempts x (connect + read) + botocore backoff + margin, and read <= 60 s, SageMaker's
                # real-time invoke limit, which the model server timeout also matches.
                "ENDPOINT_CONNECT_TIMEOUT_SECONDS": str(props.endpoint_connect_timeout_seconds),
                "ENDPOINT_READ_TIMEOUT_SECONDS": str(props.endpoint_read_timeout_seconds),
                "ENDPOINT_MAX_ATTEMPTS": str(props.endpoint_max_attempts),
                "MAX_IMAGE_BYTES": str(props.max_image_bytes),
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
        autoscaled = props.autoscaled
        self.alias = lambda_.Alias(
            self,
            "LiveAlias",
            alias_name=ALIAS_NAME,
            version=self.function.current_version,
            provisioned_concurrent_executions=None if autoscaled else (props.provisioned_concurrency or None),
        )
        if autoscaled:
            scaling = self.alias.add_auto_scaling(
                min_capacity=max(props.provisioned_concurrency, 1),
                max_capacity=props.provisioned_concurrency_max,
            )
            scaling.scale_on_utilization(utilization_target=props.provisioned_utilization_target)
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
