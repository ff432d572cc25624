"""Training: the least-privilege SageMaker training role, the shared training log group (in the stage that
owns it) and the outputs the launcher reads."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.artifact_bucket import (
    CHECKPOINT_PREFIX,
    CODE_PREFIX,
    DATA_PREFIX,
    MODELS_PREFIX,
    OUTPUT_PREFIX,
    WEIGHTS_PREFIX,
    ArtifactBucket,
)
from stacks.constructs.log_group import TrainingLogGroup
from stacks.constructs.model_package import ModelPackageGroup
from stacks.constructs.training_host import GpuTrainingHost, TrainingHostProps
from stacks.constructs.training_role import SageMakerTrainingRole, TrainingRoleProps


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
        registry = ModelPackageGroup(
            self, "ModelRegistry", stage=config.stage, group_name=config.model_package_group_name
        )
        training = SageMakerTrainingRole(
            self,
            "SageMakerTraining",
            props=TrainingRoleProps(
                stage=config.stage,
                image_tag=config.training_image_tag,
                group_name=config.model_package_group_name,
            ),
            artifacts=artifacts,
            key=key,
        )
        self.role = training.role

        if config.training_log_group_owner:
            TrainingLogGroup(self, "TrainingLogGroup", retention_days=config.log_retention_days, key=key)
        if config.training_host_enabled:
            GpuTrainingHost(
                self,
                "GpuTrainingHost",
                props=TrainingHostProps(
                    stage=config.stage,
                    instance_type=config.training_host_instance_type,
                    ami_id=config.training_host_ami_id,
                    volume_gb=config.training_host_volume_gb,
                ),
                artifacts=artifacts,
                key=key,
            )

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
