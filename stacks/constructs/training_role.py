"""The SageMaker training jobs' execution role: the bucket's training prefixes, one DLC repository, the
training log group, the training metric namespace, the stage's model package group and the project key."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Acknowledgment, Aws, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.config import TRAINING_LOG_GROUP
from stacks.constructs.artifact_bucket import (
    CHECKPOINT_PREFIX,
    CODE_PREFIX,
    DATA_PREFIX,
    OUTPUT_PREFIX,
    WEIGHTS_PREFIX,
    ArtifactBucket,
)
from stacks.constructs.dlc_image import ECR_AUTH_REASON, DlcImage
from stacks.constructs.model_package import ModelPackageGroup, versions_nag_arn
from stacks.dlc_images import TRAINING_REPOSITORY

# SageMaker publishes training metrics (the algorithm's metric definitions) under this namespace.
TRAINING_METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
_METRICS_REASON = (
    "cloudwatch:PutMetricData has no resource-level permissions; it is limited by a cloudwatch:namespace "
    "condition to the training namespace."
)


@dataclass(frozen=True)
class TrainingRoleProps:
    stage: str
    # training_image_tag: the DLC image the jobs run.
    image_tag: str
    # The stage's model package group, which a job may register versions in.
    group_name: str


class SageMakerTrainingRole(Construct):
    """Execution role of the SageMaker training job.

    It reads ``data/``, ``code/``, ``weights/`` (and ``checkpoints/`` to resume a spot-interrupted job),
    writes ``training-output/`` and ``checkpoints/``, pulls one DLC repository, writes log streams in the
    training log group (which it may not create: see ``log_group.TrainingLogGroup``) and its metric namespace,
    registers versions in the stage's model package group, and uses the project key. Nothing else: no AWS
    managed policy, no other bucket.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: TrainingRoleProps,
        artifacts: ArtifactBucket,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        image = DlcImage(self, "TrainingImage", repository=TRAINING_REPOSITORY, tag=props.image_tag)
        self.image_uri = image.image_uri
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"dogbreed {props.stage}: SageMaker training jobs",
        )
        self.role = role

        statements = [
            *artifacts.training_statements(),
            iam.PolicyStatement(
                sid="UseProjectKey",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[key.key_arn],
            ),
            iam.PolicyStatement(
                sid="WriteTrainingLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[
                    f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{TRAINING_LOG_GROUP}:*"
                ],
            ),
            # A job with a volume key (training.launch sets VolumeKmsKeyId for instance types without local
            # NVMe storage) needs kms:CreateGrant on the execution role
            # (https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html#sagemaker-roles-createtrainingjob-perms);
            # only for grants to AWS resources, so the role cannot hand the key to a principal of its choice.
            iam.PolicyStatement(
                sid="GrantProjectKeyToTrainingVolumes",
                actions=["kms:CreateGrant"],
                resources=[key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            ),
            iam.PolicyStatement(
                sid="PutTrainingMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": TRAINING_METRICS_NAMESPACE}},
            ),
            *image.pull_statements(),
            # A pipeline step running as this role may register the model it trained (training.register).
            ModelPackageGroup.register_statement(props.group_name),
        ]
        policy = iam.ManagedPolicy(self, "Policy", statements=statements, roles=[role])
        Validations.of(policy).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]", reason=f"{ECR_AUTH_REASON} {_METRICS_REASON}"
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{artifacts.nag_arn(DATA_PREFIX)}*]",
                reason="Training reads every object of the data prefix (one file per image).",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{artifacts.nag_arn(CHECKPOINT_PREFIX)}*]",
                reason="SageMaker syncs checkpoint files of changing names under the checkpoint prefix.",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{artifacts.nag_arn(CODE_PREFIX)}*]",
                reason="Jobs read their source bundle, code/<job>/sourcedir.tar.gz; job names vary.",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{artifacts.nag_arn(WEIGHTS_PREFIX)}*]",
                reason="Jobs without network read the ImageNet state_dict of their arch, weights/<file>; "
                "files differ per arch.",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{artifacts.nag_arn(OUTPUT_PREFIX)}*]",
                reason="SageMaker writes <job>/output/model.tar.gz under the output prefix; job names vary.",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{versions_nag_arn(props.group_name)}]",
                reason="A new version's ARN is model-package/<group>/<N>, numbered by SageMaker; the "
                "statement names the stage's group only.",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:"
                f"log-group:{TRAINING_LOG_GROUP}:*]",
                reason="Each training job writes its own log streams, named after the job, in this group.",
            ),
        )
