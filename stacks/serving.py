"""Serving: Model -> EndpointConfig -> Endpoint (fixed name, blue/green + auto-rollback), scaling, alarms."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.alarm_topic import AlarmTopic, AlarmTopicProps
from stacks.constructs.alarms import notify_on_change
from stacks.constructs.artifact_bucket import ArtifactBucket
from stacks.constructs.endpoint import EndpointProps, InferenceEndpoint, deployment_timeout_seconds
from stacks.constructs.endpoint_alarms import EndpointAlarms, EndpointAlarmsProps, EndpointDashboard
from stacks.constructs.endpoint_config import EndpointConfigProps, InferenceEndpointConfig
from stacks.constructs.endpoint_scaling import EndpointAutoScaling, EndpointScalingProps
from stacks.constructs.inference_component import ModelComponent, ModelComponentProps
from stacks.constructs.inference_model import InferenceModel, InferenceModelProps
from stacks.constructs.log_group import LogGroupProps
from stacks.constructs.model_package import (
    ModelApprovalNotices,
    ModelApprovalNoticesProps,
    ModelPackageCheckProps,
)
from stacks.model_environment import model_environment


def _model_props(config: StageConfig, logs: LogGroupProps) -> InferenceModelProps:
    package_check = None
    if config.model_from_package:
        package_check = ModelPackageCheckProps(
            stage=config.stage,
            package_arn=config.model_package_arn,
            package_region=config.model_package_region,
            package_account=config.model_package_account,
            group_name=config.model_package_group_name,
            source_id=config.model_source_id,
            require_approved=config.production,
            instance_type="" if config.is_serverless else config.instance_type,
            logs=logs,
        )
    return InferenceModelProps(
        stage=config.stage,
        endpoint_name=config.endpoint_name,
        image_tag=config.inference_image_tag,
        environment=model_environment(config),
        package_check=package_check,
        model_data_url=config.model_data_url,
        model_object="" if config.model_from_package else f"{config.model_bucket}/{config.model_key}",
        source_id=config.model_source_id,
        component_name=config.served_component_name,
        serverless=config.is_serverless,
        data_capture=config.data_capture_enabled,
        logs=logs,
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
        component_name = config.served_component_name
        # The stage's alarm topic and the endpoint's alarms share the scope ("Alarms") their logical ids
        # were minted under when the alarms owned the topic: the endpoint's alarms take the id "Default",
        # which CDK leaves out of logical ids.
        alarm_scope = Construct(self, "Alarms")
        alarm_topic = AlarmTopic(
            alarm_scope,
            "Notifications",
            props=AlarmTopicProps(
                topic_name=config.alarm_topic_name,
                endpoint_name=config.endpoint_name,
                email=config.alarm_email,
                team_topic_arn=config.alarm_topic_arn,
            ),
            key=key,
        )
        # Every alarm of the stage notifies these, the API and front door stacks' too.
        destinations = alarm_topic.destinations
        alarms = EndpointAlarms(
            alarm_scope,
            "Default",
            props=EndpointAlarmsProps(
                endpoint_name=config.endpoint_name,
                component_name=component_name,
                latency_p99_ms=config.alarm_latency_p99_ms,
                errors_5xx=config.alarm_5xx_errors,
                rate_4xx_percent=config.alarm_4xx_rate_percent,
            ),
            destinations=destinations,
        )
        logs = LogGroupProps(retention_days=config.log_retention_days, retained=config.production)
        model = InferenceModel(
            self,
            "Model",
            props=_model_props(config, logs),
            key=key,
            artifacts=artifacts,
            rollback_alarms=alarms.rollback_alarms,
        )
        endpoint_config = InferenceEndpointConfig(
            self,
            "Config",
            props=EndpointConfigProps(
                inference_component=config.is_inference_component,
                serverless=config.is_serverless,
                instance_type=config.instance_type,
                min_instances=config.min_instances,
                max_instances=config.max_instances,
                serverless_memory_mb=config.serverless_memory_mb,
                serverless_max_concurrency=config.serverless_max_concurrency,
                data_capture_percent=config.data_capture_sampling_percent
                if config.data_capture_enabled
                else None,
            ),
            model=model.model,
            model_role=model.role,
            key=key,
            artifacts=artifacts,
        ).endpoint_config
        endpoint_props = EndpointProps(
            endpoint_name=config.endpoint_name,
            inference_component=config.is_inference_component,
            serverless=config.is_serverless,
            traffic_routing=config.traffic_routing,
            canary_percent=config.canary_percent,
            baking_period_seconds=config.baking_period_seconds,
        )
        endpoint = InferenceEndpoint(
            self,
            "Endpoint",
            props=endpoint_props,
            endpoint_config=endpoint_config,
            rollback_alarms=alarms.rollback_alarms,
        )
        self.endpoint_name = endpoint.endpoint_name
        self.endpoint_arn = endpoint.endpoint_arn
        self.alarm_topic = alarm_topic.topic
        # The component the Lambda names, or None where the endpoint serves its model itself.
        self.inference_component_arn: str | None = None
        if component_name is not None:
            component = ModelComponent(
                self,
                "Component",
                props=ModelComponentProps(
                    component_name=component_name,
                    instance_type=config.instance_type,
                    baking_period_seconds=config.baking_period_seconds,
                    autoscaling=config.autoscaling_enabled,
                    max_instances=config.max_instances,
                    target_invocations_per_instance=config.target_invocations_per_instance,
                    scale_out_cooldown_seconds=config.scale_out_cooldown_seconds,
                    scale_to_zero_idle_minutes=config.scale_to_zero_idle_minutes,
                ),
                endpoint=endpoint.endpoint,
                model=model.model,
                rollback_alarms=alarms.rollback_alarms,
                deployment_timeout_seconds=deployment_timeout_seconds(endpoint_props),
            )
            self.inference_component_arn = component.component_arn
            notify_on_change(component.alarms, destinations)
        elif not config.is_serverless and config.autoscaling_enabled:
            EndpointAutoScaling(
                self,
                "Scaling",
                props=EndpointScalingProps(
                    endpoint_name=config.endpoint_name,
                    min_instances=config.min_instances,
                    max_instances=config.max_instances,
                    target_invocations_per_instance=config.target_invocations_per_instance,
                    scale_in_cooldown_seconds=config.scale_in_cooldown_seconds,
                    scale_out_cooldown_seconds=config.scale_out_cooldown_seconds,
                ),
                endpoint=endpoint.endpoint,
            )
        EndpointDashboard(
            self,
            "Dashboard",
            dashboard_name=f"{config.endpoint_name}-endpoint",
            metrics=alarms,
            alarms=[*alarms.all_alarms, *alarm_topic.alarms],
        )
        approvals = ModelApprovalNotices(
            self,
            "ModelApprovals",
            props=ModelApprovalNoticesProps(
                stage=config.stage,
                endpoint_name=config.endpoint_name,
                group_name=config.model_package_group_name,
                rule_name=config.model_approval_rule_name,
            ),
            topics=destinations,
            key=key,
        )
        notify_on_change(approvals.alarms, destinations)

        CfnOutput(self, "EndpointName", value=endpoint.endpoint_name, description="SageMaker endpoint name")
        CfnOutput(
            self,
            "AlarmTopicArn",
            value=alarm_topic.topic.topic_arn,
            description="Alarm notifications (endpoint and API)",
        )
        CfnOutput(self, "ModelImageUri", value=model.image_uri, description="PyTorch inference DLC image")
