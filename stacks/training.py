"""Training: the least-privilege SageMaker training role, the shared training log group (in the stage that
owns it) and the outputs the launcher reads."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, CfnOutput, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import TRAINING_LOG_GROUP, StageConfig
from stacks.constructs.dlc_image import ECR_AUTH_REASON, DlcImage
from stacks.constructs.log_group import retention
from stacks.constructs.model_package import ModelPackageGroup, versions_nag_arn
from stacks.constructs.training_host import GpuTrainingHost
from stacks.dlc_images import TRAINING_REPOSITORY
from stacks.storage import (
    CHECKPOINT_PREFIX,
    CODE_PREFIX,
    DATA_PREFIX,
    MODELS_PREFIX,
    OUTPUT_PREFIX,
    RETAIN_EXCEPT_ON_CREATE,
    WEIGHTS_PREFIX,
    ArtifactBucket,
)

# SageMaker publishes training metrics (the algorithm's metric definitions) under this namespace.
TRAINING_METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"


class SageMakerTrainingRole(Construct):
    """Execution role of the SageMaker training job.

    It reads ``data/``, ``code/``, ``weights/`` (and ``checkpoints/`` to resume a spot-interrupted job),
    writes ``training-output/`` and ``checkpoints/``, pulls one DLC repository, writes log streams in the
    training log group (which it may not create: see ``TrainingLogGroup``) and its metric namespace,
    registers versions in the stage's model package group, and uses the project key. Nothing else: no AWS
    managed policy, no other bucket.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        artifacts: ArtifactBucket,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        image = DlcImage(self, "TrainingImage", repository=TRAINING_REPOSITORY, tag=config.training_image_tag)
        self.image_uri = image.image_uri
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"dogbreed {config.stage}: SageMaker training jobs",
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
            ModelPackageGroup.register_statement(config),
        ]
        policy = iam.ManagedPolicy(self, "Policy", statements=statements, roles=[role])
        Validations.of(policy).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]", reason=f"{ECR_AUTH_REASON} {_METRICS_REASON}"
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{ArtifactBucket.nag_arn(config, DATA_PREFIX)}*]",
                reason="Training reads every object of the data prefix (one file per image).",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{ArtifactBucket.nag_arn(config, CHECKPOINT_PREFIX)}*]",
                reason="SageMaker syncs checkpoint files of changing names under the checkpoint prefix.",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{ArtifactBucket.nag_arn(config, CODE_PREFIX)}*]",
                reason="Jobs read their source bundle, code/<job>/sourcedir.tar.gz; job names vary.",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{ArtifactBucket.nag_arn(config, WEIGHTS_PREFIX)}*]",
                reason="Jobs without network read the ImageNet state_dict of their arch, weights/<file>; "
                "files differ per arch.",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{ArtifactBucket.nag_arn(config, OUTPUT_PREFIX)}*]",
                reason="SageMaker writes <job>/output/model.tar.gz under the output prefix; job names vary.",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{versions_nag_arn(config)}]",
                reason="A new version's ARN is model-package/<group>/<N>, numbered by SageMaker; the "
                "statement names the stage's group only.",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:"
                f"log-group:{TRAINING_LOG_GROUP}:*]",
                reason="Each training job writes its own log streams, named after the job, in this group.",
            ),
        )


_METRICS_REASON = (
    "cloudwatch:PutMetricData has no resource-level permissions; it is limited by a cloudwatch:namespace "
    "condition to the training namespace."
)


class TrainingLogGroup(Construct):
    """``/aws/sagemaker/TrainingJobs``, where SageMaker writes every training job's logs.

    One group per account and region, shared by every stage (and anything else training there), so one stage
    declares it (``training_log_group_owner``, the production stage by default) with its retention and key,
    and keeps it when the stack goes: the other stages' jobs still write to it. No training role may create
    it, so SageMaker never creates it unencrypted and without retention. An account that trained before has
    the group already; deploy the owner's training stack once with ``--import-existing-resources``
    (CloudFormation adopts a named resource whose DeletionPolicy is Retain or RetainExceptOnCreate,
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/import-resources-automatically.html).
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=TRAINING_LOG_GROUP,
            retention=retention(config.log_retention_days),
            encryption_key=key,
            removal_policy=RETAIN_EXCEPT_ON_CREATE,
        )


class TrainingStack(Stack):
    """The SageMaker training role, the training log group (in its owner stage) and, if enabled, the EC2 GPU
    host, plus the launcher's outputs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        artifacts: ArtifactBucket,
        key: kms.IKey,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        registry = ModelPackageGroup(self, "ModelRegistry", config=config)
        training = SageMakerTrainingRole(
            self, "SageMakerTraining", config=config, artifacts=artifacts, key=key
        )
        self.role = training.role

        if config.training_log_group_owner:
            TrainingLogGroup(self, "TrainingLogGroup", config=config, key=key)
        if config.training_host_enabled:
            GpuTrainingHost(self, "GpuTrainingHost", config=config, artifacts=artifacts, key=key)

        outputs = {
            "TrainingRoleArn": (training.role.role_arn, "Execution role of SageMaker training jobs"),
            "BucketName": (artifacts.bucket_name, "Bucket for data, checkpoints, training output, models"),
            "DataPrefix": (DATA_PREFIX, "Prefix of the ImageFolder data set (train/ valid/ test/)"),
            "OutputPrefix": (OUTPUT_PREFIX, "Prefix SageMaker writes <job>/output/model.tar.gz under"),
            "CheckpointPrefix": (CHECKPOINT_PREFIX, "Prefix of the managed-spot checkpoints"),
            "CodePrefix": (CODE_PREFIX, "Prefix for the source bundle the EC2 training host reads"),
            "WeightsPrefix": (
                WEIGHTS_PREFIX,
                "Prefix of the ImageNet state_dict files for training without "
                "network (--weights-s3-uri, the EC2 host)",
            ),
            "ModelsPrefix": (MODELS_PREFIX, "Prefix for promoted, deployable model.tar.gz artifacts"),
            "ModelPackageGroupName": (
                registry.group_name,
                "Model registry group: training.register adds versions, make promote names one in cdk.json",
            ),
            "KmsKeyArn": (key.key_arn, "Project KMS key (output and volume encryption)"),
            "TrainingImageUri": (training.image_uri, "PyTorch training DLC image for this region"),
        }
        for output_id, (value, description) in outputs.items():
            CfnOutput(self, output_id, value=value, description=description)
