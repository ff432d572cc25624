"""The endpoint, under a fixed name, with blue/green deployment and auto-rollback on its alarms."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.constructs.inference_component import CONTAINER_STARTUP_SECONDS

# Blue/green must finish (or roll back) within this time (API range 600-28800 s), and SageMaker requires it
# to exceed the deployment's waits (baking periods + termination wait). At least an hour; more when long
# baking periods need it.
MAX_DEPLOYMENT_SECONDS = 3600
# The old (blue) fleet lingers this long after the traffic shift, for an instant manual rollback.
TERMINATION_WAIT_SECONDS = 300
# Launching the green fleet: instances, then model download and container start-up at their limits.
GREEN_FLEET_SECONDS = 600 + 2 * CONTAINER_STARTUP_SECONDS


@dataclass(frozen=True)
class EndpointProps:
    endpoint_name: str
    # serving_mode inference_component / serverless (neither: instance).
    inference_component: bool
    serverless: bool
    # traffic_routing: ALL_AT_ONCE or CANARY (of canary_percent), each baking baking_period_seconds.
    traffic_routing: str
    canary_percent: int
    baking_period_seconds: int


def deployment_timeout_seconds(props: EndpointProps) -> int:
    """MaximumExecutionTimeoutInSeconds: the green fleet's launch plus every wait, at least an hour.

    A canary deployment bakes after the canary step and again after the full shift; all-at-once bakes once.
    """
    bakes = 2 if props.traffic_routing == "CANARY" else 1
    waits = bakes * props.baking_period_seconds + TERMINATION_WAIT_SECONDS
    return max(MAX_DEPLOYMENT_SECONDS, GREEN_FLEET_SECONDS + waits)


class InferenceEndpoint(Construct):
    """The endpoint, under a fixed name, with blue/green deployment and auto-rollback on the alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: EndpointProps,
        endpoint_config: sagemaker.CfnEndpointConfig,
        rollback_alarms: list[cloudwatch.IAlarm],
    ) -> None:
        super().__init__(scope, construct_id)
        if props.inference_component:
            # A new model is the component's rolling update (ModelComponent), with its own rollback; the
            # endpoint's config changes only with the instance settings, and SageMaker manages the count.
            self.endpoint = sagemaker.CfnEndpoint(
                self,
                "Endpoint",
                endpoint_name=props.endpoint_name,
                endpoint_config_name=endpoint_config.attr_endpoint_config_name,
            )
            self.endpoint_name = self.endpoint.attr_endpoint_name
            self.endpoint_arn = self.endpoint.attr_endpoint_arn
            return
        if props.traffic_routing == "CANARY":
            routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                type="CANARY",
                canary_size=sagemaker.CfnEndpoint.CapacitySizeProperty(
                    type="CAPACITY_PERCENT", value=props.canary_percent
                ),
                wait_interval_in_seconds=props.baking_period_seconds,
            )
        else:
            routing = sagemaker.CfnEndpoint.TrafficRoutingConfigProperty(
                type="ALL_AT_ONCE", wait_interval_in_seconds=props.baking_period_seconds
            )
        self.endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=props.endpoint_name,
            endpoint_config_name=endpoint_config.attr_endpoint_config_name,
            # UpdateEndpoint resets the instance count to the new config's InitialInstanceCount
            # (min_instances) unless variant properties are retained: a retrain deployed under load would
            # shrink an autoscaled fleet to its minimum (and trip the latency alarm into a rollback). Keep the
            # count autoscaling set; a higher min_instances still applies through the scalable target.
            retain_all_variant_properties=None if props.serverless else True,
            deployment_config=sagemaker.CfnEndpoint.DeploymentConfigProperty(
                blue_green_update_policy=sagemaker.CfnEndpoint.BlueGreenUpdatePolicyProperty(
                    traffic_routing_configuration=routing,
                    maximum_execution_timeout_in_seconds=deployment_timeout_seconds(props),
                    termination_wait_in_seconds=TERMINATION_WAIT_SECONDS,
                ),
                auto_rollback_configuration=sagemaker.CfnEndpoint.AutoRollbackConfigProperty(
                    alarms=[
                        sagemaker.CfnEndpoint.AlarmProperty(alarm_name=alarm.alarm_name)
                        for alarm in rollback_alarms
                    ]
                ),
            ),
        )
        self.endpoint_name = self.endpoint.attr_endpoint_name
        # Endpoint ARNs are lower-case whatever the name's case: take the service's value, never a format().
        self.endpoint_arn = self.endpoint.attr_endpoint_arn
