"""Storage: the KMS key and the bucket for data, checkpoints, training output and model artifacts."""

from __future__ import annotations

from aws_cdk import Stack
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.artifact_bucket import ArtifactBucket, ArtifactBucketProps
from stacks.constructs.keys import ProjectKey, ProjectKeyProps
from stacks.constructs.log_bucket import AccessLogBucket


class StorageStack(Stack):
    """KMS key + artifact bucket (+ its access-log bucket). Everything is retained on stack deletion."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.key = ProjectKey(
            self,
            "ProjectKey",
            props=ProjectKeyProps(
                stage=config.stage,
                name_prefix=config.stack_prefix,
                spot_instance_volumes=config.training_host_enabled,
                approval_rule_name=config.model_approval_rule_name,
                alarm_topic_name=config.alarm_topic_name,
            ),
        ).key
        access_logs = AccessLogBucket(
            self, "AccessLogs", expiration_days=config.access_log_expiration_days
        ).bucket
        self.artifacts = ArtifactBucket(
            self,
            "Artifacts",
            props=ArtifactBucketProps(
                name_prefix=config.stack_prefix,
                checkpoint_expiration_days=config.checkpoint_expiration_days,
                data_capture_expiration_days=config.data_capture_expiration_days,
                noncurrent_version_expiration_days=config.noncurrent_version_expiration_days,
            ),
            key=self.key,
            access_logs=access_logs,
        )
        self.bucket = self.artifacts.bucket
