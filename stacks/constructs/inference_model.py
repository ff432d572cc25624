"""The SageMaker Model: PyTorch inference DLC + model.tar.gz (or the registered package that names both), and
a role that can touch only those."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Acknowledgment, Aws, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.constructs.artifact_bucket import DATA_CAPTURE_PREFIX, ArtifactBucket
from stacks.constructs.dlc_image import ECR_AUTH_REASON, DlcImage
from stacks.constructs.log_group import LogGroupProps, stage_log_group
from stacks.constructs.model_package import (
    ModelPackageCheck,
    ModelPackageCheckProps,
    describe_versions_statement,
    versions_nag_arn,
)
from stacks.dlc_images import INFERENCE_REPOSITORY

ENDPOINT_METRICS_NAMESPACE = "/aws/sagemaker/Endpoints"
COMPONENT_METRICS_NAMESPACE = "/aws/sagemaker/InferenceComponents"


@dataclass(frozen=True)
class InferenceModelProps:
    stage: str
    endpoint_name: str
    # inference_image_tag: the DLC image of a model built from model_data_url.
    image_tag: str
    # The container environment (stacks.model_environment.model_environment).
    environment: Mapping[str, str]
    # Exactly one names the model: a package (with its deploy-time check) or an artifact URL ("" else).
    package_check: ModelPackageCheckProps | None
    model_data_url: str
    # model_data_url's object, as StageConfig parses it ("" with a package): the artifact grant's resource.
    model_object: str
    # model_source_id: the artifact grant's logical id follows the model.
    source_id: str
    # inference_component mode: the component whose containers log to a group of its name; else None.
    component_name: str | None
    serverless: bool
    data_capture: bool
    logs: LogGroupProps


class InferenceModel(Construct):
    """A ``CfnModel`` whose name CloudFormation generates.

    Built from the stage's model package (``ModelPackageName``: the package names the image and artifact)
    or, for an experiment, from ``model_data_url`` and the stage's DLC image. Either way the stack sets the
    container environment and network isolation. A new package or URL changes the container definition,
    which requires replacement: CloudFormation creates a model under a new generated name and the endpoint
    config that references it is replaced too, so the endpoint (fixed name) is updated in place.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: InferenceModelProps,
        key: kms.IKey,
        artifacts: ArtifactBucket,
        rollback_alarms: list[cloudwatch.IAlarm],
    ) -> None:
        super().__init__(scope, construct_id)
        image = DlcImage(self, "InferenceImage", repository=INFERENCE_REPOSITORY, tag=props.image_tag)
        self.image_uri = image.image_uri
        # The group the endpoint's containers write to, under the name SageMaker uses.
        endpoint_group = f"/aws/sagemaker/Endpoints/{props.endpoint_name}"
        self.log_group = stage_log_group(self, "LogGroup", props=props.logs, key=key, name=endpoint_group)
        log_group_names = [endpoint_group]
        self.log_groups = [self.log_group]
        if props.component_name is not None:
            # An inference component's containers log to a group of the component's name.
            component_group = f"/aws/sagemaker/InferenceComponents/{props.component_name}"
            self.log_groups.append(
                stage_log_group(self, "ComponentLogGroup", props=props.logs, key=key, name=component_group)
            )
            log_group_names.append(component_group)
        log_group_arns = [
            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{name}"
            for name in log_group_names
        ]
        package_check = None
        if props.package_check is not None:
            # The package knows its artifact; the check reads it at deploy time, so the grant below names
            # that one object, as it does for a model_data_url. It also holds the package to the stage's
            # bucket, image and instance type, which the package pinned when it was registered.
            package_check = ModelPackageCheck(
                self,
                "PackageCheck",
                props=props.package_check,
                key=key,
                expected_bucket=artifacts.bucket_name,
                expected_image=image.image_uri,
            )
            artifact_arn = package_check.artifact_arn
        else:
            artifact_arn = f"arn:{Aws.PARTITION}:s3:::{props.model_object}"

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"dogbreed {props.stage}: SageMaker model {props.endpoint_name}",
        )
        # The artifact grant lives in its own policy whose logical id follows the artifact. A new package
        # or model_data_url then *adds* a policy (CloudFormation deletes the old one in the cleanup phase,
        # after the endpoint update succeeded) instead of rewriting one in place: if the blue/green update
        # fails and the stack rolls back, UpdateEndpoint back to the old config launches instances that must
        # download the old artifact, which an in-place edit would already have revoked
        # (UPDATE_ROLLBACK_FAILED).
        artifact_policy = iam.ManagedPolicy(
            self,
            f"ArtifactPolicy{props.source_id}",
            statements=[
                iam.PolicyStatement(
                    sid="ReadModelArtifact", actions=["s3:GetObject"], resources=[artifact_arn]
                )
            ],
            roles=[self.role],
        )
        # Per-instance metrics; an inference component's go to a namespace of their own.
        metric_namespaces = (
            [ENDPOINT_METRICS_NAMESPACE, COMPONENT_METRICS_NAMESPACE]
            if props.component_name is not None
            else ENDPOINT_METRICS_NAMESPACE
        )
        statements = [
            # The artifact normally lives in the project bucket, encrypted with the project key; the key is
            # usable only through S3 (kms:ViaService), not directly.
            iam.PolicyStatement(
                sid="DecryptModelArtifact",
                actions=["kms:Decrypt"],
                resources=[key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                sid="WriteEndpointLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[f"{arn}:log-stream:*" for arn in log_group_arns],
            ),
            iam.PolicyStatement(
                sid="DescribeEndpointLogStreams",
                actions=["logs:DescribeLogStreams"],
                resources=[f"{arn}:*" for arn in log_group_arns],
            ),
            # Blue/green auto-rollback reads the alarms with the endpoint's execution role (SageMaker
            # Developer Guide, "Auto-Rollback Configuration and Monitoring").
            iam.PolicyStatement(
                sid="ReadRollbackAlarms",
                actions=["cloudwatch:DescribeAlarms"],
                resources=[alarm.alarm_arn for alarm in rollback_alarms],
            ),
            # Per-instance metrics (CPU, GPU, memory, disk) are published with the execution role too.
            iam.PolicyStatement(
                sid="PutEndpointInstanceMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": metric_namespaces}},
            ),
            *image.pull_statements(),
        ]
        if props.package_check is not None:
            statements.append(describe_versions_statement(props.package_check.group_name))
        if props.data_capture:
            statements += [
                iam.PolicyStatement(
                    sid="WriteDataCapture",
                    actions=["s3:PutObject"],
                    resources=[artifacts.objects_arn(f"{DATA_CAPTURE_PREFIX}*")],
                ),
                iam.PolicyStatement(
                    sid="EncryptDataCapture",
                    actions=["kms:GenerateDataKey", "kms:Encrypt"],
                    resources=[key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"}},
                ),
            ]
        policy = iam.ManagedPolicy(self, "Policy", statements=statements, roles=[self.role])

        acknowledgments = [
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason=f"{ECR_AUTH_REASON} cloudwatch:PutMetricData has no resource-level permissions; the "
                f"statement is limited to the {ENDPOINT_METRICS_NAMESPACE} (and, for an inference component, "
                f"{COMPONENT_METRICS_NAMESPACE}) namespace by condition.",
            ),
        ]
        for name in log_group_names:
            arn = f"arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:{name}"
            acknowledgments += [
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{arn}:log-stream:*]",
                    reason="The container writes one log stream per instance and worker, with generated "
                    "names.",
                ),
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{arn}:*]",
                    reason="Scoped to this endpoint's own log group; the suffix covers its streams.",
                ),
            ]
        if props.package_check is not None:
            acknowledgments.append(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{versions_nag_arn(props.package_check.group_name)}]",
                    reason="The model may describe the versions of its stage's own group, which SageMaker "
                    "numbers; nothing outside the group.",
                )
            )
        if props.data_capture:
            acknowledgments.append(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{artifacts.nag_arn(DATA_CAPTURE_PREFIX)}*]",
                    reason="Data capture writes one object per captured batch under the data-capture prefix.",
                )
            )
        Validations.of(policy).acknowledge(*acknowledgments)

        self.model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.role.role_arn,
            primary_container=self._container(props, image.image_uri),
            # No outbound network from the container: the artifact is self-contained (contract), and
            # SageMaker itself fetches the image and model. Serverless endpoints do not support isolation.
            enable_network_isolation=not props.serverless,
        )
        self.model.node.add_dependency(policy, artifact_policy, *self.log_groups)
        if package_check is not None:
            self.model.node.add_dependency(package_check.resource)

    @staticmethod
    def _container(
        props: InferenceModelProps, image_uri: str
    ) -> sagemaker.CfnModel.ContainerDefinitionProperty:
        environment = dict(props.environment)
        if props.package_check is not None:
            # Image and ModelDataUrl come from the package; the environment is the stage's, set next to
            # ModelPackageName as the SageMaker SDK's ModelPackage does (sagemaker/model.py).
            return sagemaker.CfnModel.ContainerDefinitionProperty(
                model_package_name=props.package_check.package_arn, environment=environment
            )
        return sagemaker.CfnModel.ContainerDefinitionProperty(
            image=image_uri, model_data_url=props.model_data_url, environment=environment
        )
