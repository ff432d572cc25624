"""Autoscaling of an instance-based endpoint: its variant's instance count, tracking invocations."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.constructs.endpoint_alarms import VARIANT_NAME
from stacks.constructs.inference_component import service_linked_scaling_role


@dataclass(frozen=True)
class EndpointScalingProps:
    # The fixed endpoint name: the scalable target names the variant by it.
    endpoint_name: str
    min_instances: int
    max_instances: int
    target_invocations_per_instance: int
    scale_in_cooldown_seconds: int
    scale_out_cooldown_seconds: int


class EndpointAutoScaling(Construct):
    """Instance count between min and max, tracking invocations per instance.

    Changing only the model keeps the scalable target valid during a blue/green update; UpdateEndpoint
    to another instance type fails while the variant is registered (SageMaker "Update endpoints that use
    auto scaling"), so such a change deploys once with ``autoscaling_enabled: false`` first.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: EndpointScalingProps,
        endpoint: sagemaker.CfnEndpoint,
    ) -> None:
        super().__init__(scope, construct_id)
        self.target = appscaling.ScalableTarget(
            self,
            "Target",
            role=service_linked_scaling_role(self),
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{props.endpoint_name}/variant/{VARIANT_NAME}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=props.min_instances,
            max_capacity=props.max_instances,
        )
        self.target.node.add_dependency(endpoint)
        # Target and cooldowns come from config; issue 5 (benchmarks) derives them from measured throughput.
        self.target.scale_to_track_metric(
            "InvocationsPerInstance",
            target_value=props.target_invocations_per_instance,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            scale_in_cooldown=Duration.seconds(props.scale_in_cooldown_seconds),
            scale_out_cooldown=Duration.seconds(props.scale_out_cooldown_seconds),
        )
