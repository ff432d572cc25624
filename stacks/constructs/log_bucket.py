"""Buckets that receive logs: the artifact bucket's server access logs, and the recipe every log
destination shares (the front door's distribution logs use it too, ``front_door.py``)."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.constructs.artifact_bucket import REPLICATION_REASON
from stacks.constructs.removal_policy import RETAIN_EXCEPT_ON_CREATE


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

    def __init__(self, scope: Construct, construct_id: str, *, expiration_days: int) -> None:
        super().__init__(scope, construct_id)
        self.bucket = log_destination_bucket(
            self,
            "Bucket",
            of="access-log",
            rule_id="expire-access-logs",
            expiration_days=expiration_days,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            # https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html
            encryption_reason="S3 server access logs can only be delivered to SSE-S3 buckets, not SSE-KMS.",
        )
