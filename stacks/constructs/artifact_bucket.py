"""The project bucket for data, checkpoints, training output and model artifacts, and its prefixes."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Acknowledgment, Aws, Duration, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.constructs.removal_policy import RETAIN_EXCEPT_ON_CREATE

# The prefixes the training launcher and the serving stack agree on (CfnOutputs of the training stack).
DATA_PREFIX = "data/"
OUTPUT_PREFIX = "training-output/"
CHECKPOINT_PREFIX = "checkpoints/"
MODELS_PREFIX = "models/"
# Source bundle of this repository for the optional EC2 training host, which has no internet access.
CODE_PREFIX = "code/"
# ImageNet state_dict files for training without network (a network-isolated job, the EC2 host).
WEIGHTS_PREFIX = "weights/"
DATA_CAPTURE_PREFIX = "data-capture/"
ACCESS_LOG_PREFIX = "artifacts-bucket/"

REPLICATION_REASON = (
    "Single-region project: the data set is re-downloadable and models are re-trainable; versioning plus "
    "a RETAIN policy protect against deletion, and cross-region replication would double storage cost."
)


@dataclass(frozen=True)
class ArtifactBucketProps:
    # The stack prefix: the bucket is <prefix>-<account>-<region>.
    name_prefix: str
    checkpoint_expiration_days: int
    data_capture_expiration_days: int
    noncurrent_version_expiration_days: int


class ArtifactBucket(Construct):
    """The project bucket: KMS, no public access, TLS only, versioned, logged, with lifecycle rules.

    Its name is derived from the stage, account and region (unique, and known to the launcher without a
    lookup). ``objects_arn(prefix)`` builds object ARNs from that name and pseudo parameters only, so a
    policy in another stack needs no cross-stack reference for them and cdk-nag's findings on the
    prefix wildcards have stable ids that the acknowledgements next to those policies can name.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: ArtifactBucketProps,
        key: kms.IKey,
        access_logs: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        self.name_prefix = props.name_prefix
        self.bucket_name = f"{props.name_prefix}-{Aws.ACCOUNT_ID}-{Aws.REGION}"
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=self.bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            # An S3 Bucket Key cuts KMS requests (and cost) for the many small files of an image data set.
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix=ACCESS_LOG_PREFIX,
            removal_policy=RETAIN_EXCEPT_ON_CREATE,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-checkpoints",
                    prefix=CHECKPOINT_PREFIX,
                    expiration=Duration.days(props.checkpoint_expiration_days),
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="expire-data-capture",
                    prefix=DATA_CAPTURE_PREFIX,
                    expiration=Duration.days(props.data_capture_expiration_days),
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="expire-old-versions",
                    noncurrent_version_expiration=Duration.days(props.noncurrent_version_expiration_days),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                    expired_object_delete_marker=True,
                ),
            ],
        )
        Validations.of(self.bucket).acknowledge(
            Acknowledgment(id="NIST.800.53.R5-S3BucketReplicationEnabled", reason=REPLICATION_REASON),
        )

    @property
    def bucket_arn(self) -> str:
        return f"arn:{Aws.PARTITION}:s3:::{self.bucket_name}"

    def objects_arn(self, pattern: str) -> str:
        return f"{self.bucket_arn}/{pattern}"

    def nag_arn(self, pattern: str) -> str:
        """How cdk-nag prints ``objects_arn(pattern)`` in a finding id."""
        return f"arn:<AWS::Partition>:s3:::{self.name_prefix}-<AWS::AccountId>-<AWS::Region>/{pattern}"

    def training_statements(self) -> list[iam.PolicyStatement]:
        """The S3 access of anything that trains (SageMaker jobs, the EC2 host): list the project
        prefixes, read data, checkpoints, code (the source bundle ``training.launch`` uploads) and
        weights (what a trainer without network starts from), write training output and checkpoints.
        Nothing else of the bucket."""
        readable = [f"{DATA_PREFIX}*", f"{CHECKPOINT_PREFIX}*", f"{CODE_PREFIX}*", f"{WEIGHTS_PREFIX}*"]
        writable = [f"{OUTPUT_PREFIX}*", f"{CHECKPOINT_PREFIX}*"]
        return [
            iam.PolicyStatement(
                sid="ListProjectPrefixes",
                actions=["s3:ListBucket"],
                resources=[self.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [*readable, f"{OUTPUT_PREFIX}*"]}},
            ),
            iam.PolicyStatement(
                sid="ReadTrainingInputs",
                actions=["s3:GetObject"],
                resources=[self.objects_arn(p) for p in readable],
            ),
            iam.PolicyStatement(
                sid="WriteOutputAndCheckpoints",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[self.objects_arn(p) for p in writable],
            ),
        ]
