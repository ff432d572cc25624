"""Serving: Model -> EndpointConfig -> Endpoint (fixed name, blue/green + auto-rollback), scaling, alarms."""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnOutput, Duration, Stack, Validations
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.alarms import alarm_destinations, notify_on_change
from stacks.constructs.endpoint_alarms import VARIANT_NAME, EndpointAlarms, EndpointDashboard
from stacks.constructs.inference_component import (
    CONTAINER_STARTUP_SECONDS,
    ModelComponent,
    service_linked_scaling_role,
)
from stacks.constructs.inference_model import InferenceModel
from stacks.constructs.model_package import ModelApprovalNotices
from stacks.storage import DATA_CAPTURE_PREFIX, ArtifactBucket

# Blue/green must finish (or roll back) within this time (API range 600-28800 s), and SageMaker requires it
# to exceed the deployment's waits (baking periods + termination wait). At least an hour; more when long
# baking periods need it.
MAX_DEPLOYMENT_SECONDS = 3600
# The old (blue) fleet lingers this long after the traffic shift, for an instant manual rollback.
TERMINATION_WAIT_SECONDS = 300
# Launching the green fleet: instances, then model download and container start-up at their limits.
GREEN_FLEET_SECONDS = 600 + 2 * CONTAINER_STARTUP_SECONDS


def deployment_timeout_seconds(config: StageConfig) -> int:
    """MaximumExecutionTimeoutInSeconds: the green fleet's launch plus every wait, at least an hour.

    A canary deployment bakes after the canary step and again after the full shift; all-at-once bakes once.
    """
    bakes = 2 if config.traffic_routing == "CANARY" else 1
    waits = bakes * config.baking_period_seconds + TERMINATION_WAIT_SECONDS
    return max(MAX_DEPLOYMENT_SECONDS, GREEN_FLEET_SECONDS + waits)


class InferenceEndpointConfig(Construct):
    """The endpoint configuration (one variant), instance-based on a GPU type or serverless."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        model: sagemaker.CfnModel,
        model_role: iam.IRole,
        key: kms.IKey,
        artifacts: ArtifactBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        if config.is_inference_component:
            # No model on the variant: the inference component places the model's copies. SageMaker
            # manages the instances, down to none while no copy runs.
            variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=VARIANT_NAME,
                instance_type=config.instance_type,
                # The API's minimum; SageMaker then follows the copies, down to none.
                initial_instance_count=1,
                # One instance more than copies: a rolling update starts the new copy (on an instance of
                # its own, since a copy takes every GPU) before it stops an old one.
                managed_instance_scaling=sagemaker.CfnEndpointConfig.ManagedInstanceScalingProperty(
                    status="ENABLED", min_instance_count=0, max_instance_count=config.max_instances + 1
                ),
                routing_config=sagemaker.CfnEndpointConfig.RoutingConfigProperty(
                    routing_strategy="LEAST_OUTSTANDING_REQUESTS"
                ),
            )
        elif config.is_serverless:
            variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=VARIANT_NAME,
                model_name=model.attr_model_name,
                serverless_config=sagemaker.CfnEndpointConfig.ServerlessConfigProperty(
                    memory_size_in_mb=config.serverless_memory_mb,
                    max_concurrency=config.serverless_max_concurrency,
                ),
            )
        else:
            variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=VARIANT_NAME,
                model_name=model.attr_model_name,
                instance_type=config.instance_type,
                initial_instance_count=config.min_instances,
                initial_variant_weight=1,
                container_startup_health_check_timeout_in_seconds=CONTAINER_STARTUP_SECONDS,
                model_data_download_timeout_in_seconds=CONTAINER_STARTUP_SECONDS,
            )
        data_capture = None
        if config.data_capture_enabled:
            data_capture = sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                enable_capture=True,
                initial_sampling_percentage=config.data_capture_sampling_percent,
                destination_s3_uri=f"s3://{artifacts.bucket_name}/{DATA_CAPTURE_PREFIX.rstrip('/')}",
                kms_key_id=key.key_arn,
                capture_options=[
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Input"),
                    sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode="Output"),
                ],
            )
        # Instance types with local NVMe storage (g4dn, g5, ...) encrypt it in hardware, and
        # CreateEndpointConfig rejects a KmsKeyId for them; serverless endpoints have no ML storage volume.
        volume_key = None if (config.is_serverless or config.instance_has_local_nvme) else key.key_arn
        component = config.is_inference_component
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
                if config.is_serverless
                else f"{config.instance_type} has local NVMe instance storage, encrypted by the instance's "
                "hardware module; SageMaker rejects a KmsKeyId for instance types with local storage."
            )
            Validations.of(self.endpoint_config).acknowledge(
                Acknowledgment(id="AwsSolutions-SM2", reason=reason),
                Acknowledgment(
                    id="NIST.800.53.R5-SageMakerEndpointConfigurationKMSKeyConfigured", reason=reason
                ),
            )


class InferenceEndpoint(Construct):
    """The endpoint, under a fixed name, with blue/green deployment and auto-rollback on the alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        endpoint_config: sagemaker.CfnEndpointConfig,
        alarms: EndpointAlarms,
    ) -> None:
        super().__init__(scope, construct_id)
        if config.is_inference_component:
            # A new model is the component's rolling update (ModelComponent), with its own rollback; the
            # endpoint's config changes only with the instance settings, and SageMaker manages the count.
            self.endpoint = sagemaker.CfnEndpoint(
                self,
                "Endpoint",
                endpoint_name=config.endpoint_name,
                endpoint_config_name=endpoint_config.attr_endpoint_config_name,
            )
            self.endpoint_name = self.endpoint.attr_endpoint_name
            self.endpoint_arn = self.endpoint.attr_endpoint_arn
            return
        if config.traffic_routing == "CANARY":
            routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                type="CANARY",
                canary_size=sagemaker.CfnEndpoint.CapacitySizeProperty(
                    type="CAPACITY_PERCENT", value=config.canary_percent
                ),
                wait_interval_in_seconds=config.baking_period_seconds,
            )
        else:
            routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                type="ALL_AT_ONCE", wait_interval_in_seconds=config.baking_period_seconds
            )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=config.endpoint_name,
            endpoint_config_name=endpoint_config.attr_endpoint_config_name,
            # UpdateEndpoint resets the instance count to the new config's InitialInstanceCount
            # (min_instances) unless variant properties are retained: a retrain deployed under load would
            # shrink an autoscaled fleet to its minimum (and trip the latency alarm into a rollback). Keep the
            # count autoscaling set; a higher min_instances still applies through the scalable target.
            retain_all_variant_properties=None if config.is_serverless else True,
            deployment_config=sagemaker.CfnEndpoint.DeploymentConfigProperty(
                blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
                    traffic_routing_configuration=routing,
                    maximum_execution_timeout_in_seconds=deployment_timeout_seconds(config),
                    termination_wait_in_seconds=TERMINATION_WAIT_SECONDS,
                ),
                auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
                    alarms=[
                        sagemaker.CfnEndpoint.AlarmProperty(alarm_name=alarm.alarm_name)
                        for alarm in alarms.rollback_alarms
                    ]
                ),
            ),
        )
        self.endpoint_name = self.endpoint.attr_endpoint_name
        # Endpoint ARNs are lower-case whatever the name's case: take the service's value, never a format().
        self.endpoint_arn = self.endpoint.attr_endpoint_arn


class EndpointAutoScaling(Construct):
    """Instance count between min and max, tracking invocations per instance.

    Changing only the model keeps the scalable target valid during a blue/green update; UpdateEndpoint
    to another instance type fails while the variant is registered (SageMaker "Update endpoints that use
    auto scaling"), so such a change deploys once with ``autoscaling_enabled: false`` first.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, endpoint: sagemaker.CfnEndpoint
    ) -> None:
        super().__init__(scope, construct_id)
        self.target = appscaling.ScalableTarget(
            self,
            "Target",
            role=service_linked_scaling_role(self),
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{config.endpoint_name}/variant/{VARIANT_NAME}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=config.min_instances,
            max_capacity=config.max_instances,
        )
        self.target.node.add_dependency(endpoint)
        # Target and cooldowns come from config; issue 5 (benchmarks) derives them from measured throughput.
        self.target.scale_to_track_metric(
            "InvocationsPerInstance",
            target_value=config.target_invocations_per_instance,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            scale_in_cooldown=Duration.seconds(config.scale_in_cooldown_seconds),
            scale_out_cooldown=Duration.seconds(config.scale_out_cooldown_seconds),
        )


class ServingStack(Stack):
    """The SageMaker endpoint and what keeps it healthy. Exposes ``endpoint_name`` and ``endpoint_arn``."""

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
        alarms = EndpointAlarms(self, "Alarms", config=config, key=key)
        model = InferenceModel(
            self,
            "Model",
            config=config,
            key=key,
            artifacts=artifacts,
            rollback_alarms=alarms.rollback_alarms,
        )
        endpoint_config = InferenceEndpointConfig(
            self,
            "Config",
            config=config,
            model=model.model,
            model_role=model.role,
            key=key,
            artifacts=artifacts,
        ).endpoint_config
        endpoint = InferenceEndpoint(
            self, "Endpoint", config=config, endpoint_config=endpoint_config, alarms=alarms
        )
        self.endpoint_name = endpoint.endpoint_name
        self.endpoint_arn = endpoint.endpoint_arn
        self.alarm_topic = alarms.topic
        # The component the Lambda names, or None where the endpoint serves its model itself.
        self.inference_component_arn: str | None = None
        if config.is_inference_component:
            component = ModelComponent(
                self,
                "Component",
                config=config,
                endpoint=endpoint.endpoint,
                model=model.model,
                rollback_alarms=alarms.rollback_alarms,
                deployment_timeout_seconds=deployment_timeout_seconds(config),
            )
            self.inference_component_arn = component.component_arn
            notify_on_change(component.alarms, alarm_destinations(self, config, alarms.topic))
        elif not config.is_serverless and config.autoscaling_enabled:
            EndpointAutoScaling(self, "Scaling", config=config, endpoint=endpoint.endpoint)
        EndpointDashboard(self, "Dashboard", config=config, alarms=alarms)
        destinations = alarm_destinations(self, config, alarms.topic)
        approvals = ModelApprovalNotices(self, "ModelApprovals", config=config, topics=destinations, key=key)
        notify_on_change(approvals.alarms, destinations)

        CfnOutput(self, "EndpointName", value=endpoint.endpoint_name, description="SageMaker endpoint name")
        CfnOutput(
            self,
            "AlarmTopicArn",
            value=alarms.topic.topic_arn,
            description="Alarm notifications (endpoint and API)",
        )
        CfnOutput(self, "ModelImageUri", value=model.image_uri, description="PyTorch inference DLC image")
