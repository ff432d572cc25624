"""The endpoint configuration: one variant, instance-based on a GPU type, serverless, or the instances an
inference component places its copies on."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.constructs.artifact_bucket import DATA_CAPTURE_PREFIX, ArtifactBucket
from stacks.constructs.endpoint_alarms import VARIANT_NAME
from stacks.constructs.inference_component import CONTAINER_STARTUP_SECONDS
from stacks.instance_storage import has_local_nvme


@dataclass(frozen=True)
class EndpointConfigProps:
    # serving_mode inference_component / serverless (neither: instance).
    inference_component: bool
    serverless: bool
    instance_type: str
    min_instances: int
    max_instances: int
    serverless_memory_mb: int
    serverless_max_concurrency: int
    # data_capture_sampling_percent, or None where data_capture_enabled is false.
    data_capture_percent: int | None


class InferenceEndpointConfig(Construct):
    """The endpoint configuration (one variant), instance-based on a GPU type or serverless."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: EndpointConfigProps,
        model: sagemaker.CfnModel,
        model_role: iam.IRole,
        key: kms.IKey,
        artifacts: ArtifactBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        if props.inference_component:
            # No model on the variant: the inference component places the model's copies. SageMaker
            # manages the instances, down to none while no copy runs.
            variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=VARIANT_NAME,
                instance_type=props.instance_type,
                # The API's minimum; SageMaker then follows the copies, down to none.
                initial_instance_count=1,
                # One instance more than copies: a rolling update starts the new copy (on an instance of
                # its own, since a copy takes every GPU) before it stops an old one.
                managed_instance_scaling=sagemaker.CfnEndpointConfig.ManagedInstanceScalingProperty(
                    status="ENABLED", min_instance_count=0, max_instance_count=props.max_instances + 1
                ),
                routing_config=sagemaker.CfnEndpointConfig.RoutingConfigProperty(
                    routing_strategy="LEAST_OUTSTANDING_REQUESTS"
                ),
            )
        elif props.serverless:
            variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=VARIANT_NAME,
                model_name=model.attr_model_name,
                serverless_config=sagemaker.CfnEndpointConfig.ServerlessConfigProperty(
                    memory_size_in_mb=props.serverless_memory_mb,
                    max_concurrency=props.serverless_max_concurrency,
                ),
            )
        else:
            variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=VARIANT_NAME,
                model_name=model.attr_model_name,
                instance_type=props.instance_type,
                initial_instance_count=props.min_instances,
                initial_variant_weight=1,
                container_startup_health_check_timeout_in_seconds=CONTAINER_STARTUP_SECONDS,
                model_data_download_timeout_in_seconds=CONTAINER_STARTUP_SECONDS,
            )
        data_capture = None
        if props.data_capture_percent is not None:
            data_capture = sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                enable_capture=True,
                initial_sampling_percentage=props.data_capture_percent,
                destination_s3_uri=f"s3://{artifacts.bucket_name}/{DATA_CAPTURE_PREFIX.rstrip('/')}",
                kms_key_id=key.key_arn,
                capture_options=[
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
                ],
            )
        # Instance types with local NVMe storage (g4dn, g5, ...) encrypt it in hardware, and
        # CreateEndpointConfig rejects a KmsKeyId for them; serverless endpoints have no ML storage volume.
        local_nvme = has_local_nvme(props.instance_type)
        volume_key = None if (props.serverless or local_nvme) else key.key_arn
        component = props.inference_component
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            production_variants=[variant],
            kms_key_id=volume_key,
            data_capture_config=data_capture,
            # An endpoint for inference components has no model of its own: it needs the role that pulls
            # the image and artifact, and the network isolation the Model would otherwise carry (the
            # SageMaker SDK sets both here for such endpoints).
            execution_role_arn=model_role.role_arn if component else None,
            enable_network_isolation=True if component else None,
        )
        if volume_key is None:
            reason = (
                "Serverless endpoints have no ML storage volume, so there is no volume for a KmsKeyId "
                "to encrypt."
                if props.serverless
                else f"{props.instance_type} has local NVMe instance storage, encrypted by the instance's "
                "hardware module; SageMaker rejects a KmsKeyId for instance types with local storage."
            )
            Validations.of(self.endpoint_config).acknowledge(
                Acknowledgment(id="AwsSolutions-SM2", reason=reason),
                Acknowledgment(
                    id="NIST.800.53.R5-SageMakerEndpointConfigurationKMSKeyConfigured", reason=reason
                ),
            )
