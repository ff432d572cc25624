"""Storage: the KMS key and the bucket for data, checkpoints, training output and model artifacts."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.config import StageConfig

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

# Kept on stack deletion and replacement, but deleted when the stack's first create rolls back
# (DeletionPolicy RetainExceptOnCreate): a failed first deploy (a GPU quota, a slow container start) then
# leaves no bucket under the fixed name behind, and the retry does not fail with "already exists"
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html).
RETAIN_EXCEPT_ON_CREATE = RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE

REPLICATION_REASON = (
    "Single-region project: the data set is re-downloadable and models are re-trainable; versioning plus "
    "a RETAIN policy protect against deletion, and cross-region replication would double storage cost."
)


class ProjectKey(Construct):
    """The customer-managed key for the bucket, SageMaker volumes, data capture and log groups."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            alias=f"alias/{config.stack_prefix}",
            description=f"dogbreed {config.stage}: S3 objects, SageMaker volumes, data capture, log groups",
            enable_key_rotation=True,
            removal_policy=RETAIN_EXCEPT_ON_CREATE,
        )
        if config.training_host_enabled:
            self._allow_spot_instance_volumes()
        self.key.add_to_resource_policy(log_groups_statement())
        self.key.add_to_resource_policy(alarms_statement())
        # A model approval notice EventBridge cannot publish goes to a dead-letter queue encrypted with this
        # key, which EventBridge writes as its service principal: only for the one rule of this stage
        # (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-event-delivery.html#eb-rule-dlq).
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ModelApprovalNotices",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnEquals": {
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:rule/"
                        f"{config.model_approval_rule_name}"
                    },
                },
            )
        )
        # Granted whether or not alarm_email is set: -c alarm_email may name an address on the serving
        # stack's deploy alone, and a queue SNS cannot write would lose every notification it holds.
        self.key.add_to_resource_policy(topic_dead_letter_statement(config.alarm_topic_name))

    def _allow_spot_instance_volumes(self) -> None:
        """EC2 launches and manages Spot Instances (the training host) as the AWSServiceRoleForEC2Spot
        service-linked role, which may use a customer managed key for their EBS volumes only if the key
        lets it (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/service-linked-roles-spot-instance-requests.html;
        the two statements of https://docs.aws.amazon.com/autoscaling/ec2/userguide/key-policy-requirements-EBS-encryption.html).
        The role is matched by aws:PrincipalArn instead of being the principal: a key policy whose principal
        does not exist is rejected (https://docs.aws.amazon.com/kms/latest/APIReference/API_PutKeyPolicy.html),
        and EC2 creates the role only at the account's first Spot request, after this stack."""
        spot_role = (
            f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/aws-service-role/spot.amazonaws.com/"
            "AWSServiceRoleForEC2Spot"
        )
        only_spot_role = {"ArnEquals": {"aws:PrincipalArn": spot_role}}
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="SpotInstanceVolumes",
                principals=[iam.AnyPrincipal()],
                actions=[
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:DescribeKey",
                ],
                resources=["*"],
                conditions=only_spot_role,
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="SpotInstanceVolumeGrants",
                principals=[iam.AnyPrincipal()],
                actions=["kms:CreateGrant"],
                resources=["*"],
                conditions={**only_spot_role, "Bool": {"kms:GrantIsForAWSResource": "true"}},
            )
        )


def log_groups_statement(log_group_name: str = "*") -> iam.PolicyStatement:
    """CloudWatch Logs encrypts a log group with a CMK only if the key policy lets the regional logs
    service use it, scoped to this account's log groups (``log_group_name``, a name or a pattern) by
    encryption context (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html)."""
    return iam.PolicyStatement(
        principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
        actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        resources=["*"],
        conditions={
            "ArnLike": {
                "kms:EncryptionContext:aws:logs:arn": (
                    f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{log_group_name}"
                )
            }
        },
    )


def alarms_statement() -> iam.PolicyStatement:
    """CloudWatch alarms publish to a KMS-encrypted alarm topic only if the key lets them
    (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services).
    Only this account's alarms: the key also encrypts other data, so a service principal without a source
    condition would be a confused deputy for any account's alarms
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html)."""
    return iam.PolicyStatement(
        sid="CloudWatchAlarmsOfThisAccount",
        principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions=["kms:Decrypt", "kms:GenerateDataKey*"],
        resources=["*"],
        conditions={
            "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
            "ArnLike": {
                "aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"
            },
        },
    )


def topic_dead_letter_statement(topic_name: str) -> iam.PolicyStatement:
    """An alarm topic keeps undeliverable e-mails in a queue encrypted with the key; SNS may use it for
    that one topic (https://docs.aws.amazon.com/sns/latest/dg/sns-dead-letter-queues.html)."""
    return iam.PolicyStatement(
        sid="AlarmTopicDeadLetterQueue",
        principals=[iam.ServicePrincipal("sns.amazonaws.com")],
        actions=["kms:Decrypt", "kms:GenerateDataKey*"],
        resources=["*"],
        conditions={
            "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
            "ArnEquals": {
                "aws:SourceArn": f"arn:{Aws.PARTITION}:sns:{Aws.REGION}:{Aws.ACCOUNT_ID}:{topic_name}"
            },
        },
    )


def log_destination_bucket(
    scope: Construct,
    construct_id: str,
    *,
    of: str,
    rule_id: str,
    expiration_days: int,
    object_ownership: s3.ObjectOwnership,
    encryption_reason: str,
) -> s3.Bucket:
    """A bucket that receives ``of``'s logs: SSE-S3 (log delivery writes no SSE-KMS object without its
    account in the key), no public access, TLS only, versioned, kept, expiring after ``expiration_days``."""
    bucket = s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=object_ownership,
        enforce_ssl=True,
        versioned=True,
        removal_policy=RETAIN_EXCEPT_ON_CREATE,
        lifecycle_rules=[
            s3.LifecycleRule(
                id=rule_id,
                expiration=Duration.days(expiration_days),
                noncurrent_version_expiration=Duration.days(1),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            )
        ],
    )
    loop = f"This is the {of} log destination; logging it into itself would loop."
    Validations.of(bucket).acknowledge(
        Acknowledgment(id="AwsSolutions-S1", reason=loop),
        Acknowledgment(id="NIST.800.53.R5-S3BucketLoggingEnabled", reason=loop),
        Acknowledgment(id="NIST.800.53.R5-S3DefaultEncryptionKMS", reason=encryption_reason),
        Acknowledgment(id="NIST.800.53.R5-S3BucketReplicationEnabled", reason=REPLICATION_REASON),
    )
    return bucket


class AccessLogBucket(Construct):
    """Destination of the artifact bucket's server access logs."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.bucket = log_destination_bucket(
            self,
            "Bucket",
            of="access-log",
            rule_id="expire-access-logs",
            expiration_days=config.access_log_expiration_days,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            # https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html
            encryption_reason="S3 server access logs can only be delivered to SSE-S3 buckets, not SSE-KMS.",
        )


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
        config: StageConfig,
        key: kms.IKey,
        access_logs: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket_name = f"{config.stack_prefix}-{Aws.ACCOUNT_ID}-{Aws.REGION}"
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
                    expiration=Duration.days(config.checkpoint_expiration_days),
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="expire-data-capture",
                    prefix=DATA_CAPTURE_PREFIX,
                    expiration=Duration.days(config.data_capture_expiration_days),
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="expire-old-versions",
                    noncurrent_version_expiration=Duration.days(config.noncurrent_version_expiration_days),
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

    @staticmethod
    def nag_arn(config: StageConfig, pattern: str) -> str:
        """How cdk-nag prints ``objects_arn(pattern)`` in a finding id."""
        return f"arn:<AWS::Partition>:s3:::{config.stack_prefix}-<AWS::AccountId>-<AWS::Region>/{pattern}"


class StorageStack(Stack):
    """KMS key + artifact bucket (+ its access-log bucket). Everything is retained on stack deletion."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.key = ProjectKey(self, "ProjectKey", config=config).key
        access_logs = AccessLogBucket(self, "AccessLogs", config=config).bucket
        self.artifacts = ArtifactBucket(
            self, "Artifacts", config=config, key=self.key, access_logs=access_logs
        )
        self.bucket = self.artifacts.bucket
