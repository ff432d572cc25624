"""Endpoint alarms (the blue/green rollback triggers) and the operations dashboard."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.config import StageConfig
from stacks.constructs.alarms import ABOVE, PERIOD, AlarmTopic, alarm, alarm_destinations, notify_on_change

VARIANT_NAME = "AllTraffic"


class EndpointAlarms(Construct):
    """p99 model latency, 5xx count and 4xx rate of the endpoint's one variant, or of its inference
    component (inference_component mode: SageMaker reports a component's invocations under the
    ``InferenceComponentName`` dimension, as the scale-to-zero alarm in its documentation reads them).

    The dimensions use the fixed endpoint (component) name, not a reference, because the endpoint's
    (component's) AutoRollbackConfiguration references these alarms: a reference back would be a cycle.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        # Every alarm of the stage notifies this topic, the API stack's too.
        alarm_topic = AlarmTopic(self, "Notifications", config=config, key=key)
        self.topic = alarm_topic.topic
        if config.is_inference_component:
            dimensions = {"InferenceComponentName": config.inference_component_name}
        else:
            dimensions = {"EndpointName": config.endpoint_name, "VariantName": VARIANT_NAME}
        variant_dimensions = {"EndpointName": config.endpoint_name, "VariantName": VARIANT_NAME}

        def metric(name: str, statistic: str, namespace: str = "AWS/SageMaker") -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=namespace,
                metric_name=name,
                # Instance metrics (CPU, GPU) stay per variant: they belong to the instances.
                dimensions_map=dimensions if namespace == "AWS/SageMaker" else variant_dimensions,
                statistic=statistic,
                period=PERIOD,
            )

        self.invocations = metric("Invocations", "Sum")
        self.errors_4xx = metric("Invocation4XXErrors", "Sum")
        self.errors_5xx = metric("Invocation5XXErrors", "Sum")
        self.model_latency_p99 = metric("ModelLatency", "p99")
        self.model_latency_p50 = metric("ModelLatency", "p50")
        self.overhead_latency_p99 = metric("OverheadLatency", "p99")
        self.instance_count = metric("CPUUtilization", "SampleCount", namespace="/aws/sagemaker/Endpoints")
        self.gpu_utilization = metric("GPUUtilization", "Average", namespace="/aws/sagemaker/Endpoints")
        self.cpu_utilization = metric("CPUUtilization", "Average", namespace="/aws/sagemaker/Endpoints")
        # Requests that found no copy (inference_component mode, scaled to zero): the scale-out signal.
        self.no_capacity = metric("NoCapacityInvocationFailures", "Maximum")

        self.latency = alarm(
            self,
            "ModelLatencyP99",
            description=f"{config.endpoint_name}: p99 ModelLatency > {config.alarm_latency_p99_ms} ms",
            metric=self.model_latency_p99,
            # ModelLatency is reported in microseconds.
            threshold=config.alarm_latency_p99_ms * 1000,
            comparison=ABOVE,
            periods=3,
            datapoints=2,
        )
        self.server_errors = alarm(
            self,
            "Invocation5XXErrors",
            description=f"{config.endpoint_name}: {config.alarm_5xx_errors}+ 5xx errors a minute",
            metric=self.errors_5xx,
            threshold=config.alarm_5xx_errors,
            periods=2,
            datapoints=2,
        )
        # A rate, not a count: 4xx errors grow with traffic. It notifies but never rolls a deployment back:
        # 4xx answers are the callers' (bad uploads, wrong content types), and a burst of bad uploads during
        # a bake must not undo a good model. What a model causes shows as 5xx errors or latency.
        self.client_error_rate = alarm(
            self,
            "Invocation4XXRate",
            description=f"{config.endpoint_name}: over {config.alarm_4xx_rate_percent}% 4xx errors",
            metric=cloudwatch.MathExpression(
                expression="IF(invocations > 0, 100 * errors / invocations, 0)",
                using_metrics={"errors": self.errors_4xx, "invocations": self.invocations},
                label="Invocation4XXErrors %",
                period=PERIOD,
            ),
            threshold=config.alarm_4xx_rate_percent,
            comparison=ABOVE,
            periods=3,
            datapoints=2,
        )
        self.rollback_alarms = [self.latency, self.server_errors]
        self.all_alarms = [*self.rollback_alarms, self.client_error_rate, *alarm_topic.alarms]
        notify_on_change(self.all_alarms, alarm_destinations(self, config, self.topic))


class EndpointDashboard(Construct):
    """One dashboard per stage: traffic, errors, latency, capacity."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StageConfig, alarms: EndpointAlarms
    ) -> None:
        super().__init__(scope, construct_id)
        dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{config.endpoint_name}-endpoint",
            default_interval=Duration.hours(3),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Invocations", left=[alarms.invocations], width=8),
            cloudwatch.GraphWidget(
                title="Errors",
                left=[alarms.errors_4xx, alarms.errors_5xx]
                + ([alarms.no_capacity] if config.is_inference_component else []),
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Latency (microseconds)",
                left=[alarms.model_latency_p50, alarms.model_latency_p99, alarms.overhead_latency_p99],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms (rollback first)", alarms=alarms.all_alarms, width=8),
            cloudwatch.GraphWidget(
                title="Utilization (%)", left=[alarms.cpu_utilization, alarms.gpu_utilization], width=8
            ),
            cloudwatch.GraphWidget(title="Instances reporting", left=[alarms.instance_count], width=8),
        )
