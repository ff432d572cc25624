"""Endpoint alarms (the blue/green rollback triggers) and the operations dashboard."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.constructs.alarms import ABOVE, PERIOD, alarm, notify_on_change

VARIANT_NAME = "AllTraffic"


@dataclass(frozen=True)
class EndpointAlarmsProps:
    endpoint_name: str
    # inference_component mode: the component whose invocations the alarms watch; None for the variant's.
    component_name: str | None
    latency_p99_ms: int
    errors_5xx: int
    rate_4xx_percent: int


class EndpointAlarms(Construct):
    """p99 model latency, 5xx count and 4xx rate of the endpoint's one variant, or of its inference
    component (inference_component mode: SageMaker reports a component's invocations under the
    ``InferenceComponentName`` dimension, as the scale-to-zero alarm in its documentation reads them),
    notifying ``destinations``.

    The dimensions use the fixed endpoint (component) name, not a reference, because the endpoint's
    (component's) AutoRollbackConfiguration references these alarms: a reference back would be a cycle.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: EndpointAlarmsProps,
        destinations: list[sns.ITopic],
    ) -> None:
        super().__init__(scope, construct_id)
        endpoint_name = props.endpoint_name
        if props.component_name is not None:
            dimensions = {"InferenceComponentName": props.component_name}
        else:
            dimensions = {"EndpointName": endpoint_name, "VariantName": VARIANT_NAME}
        variant_dimensions = {"EndpointName": endpoint_name, "VariantName": VARIANT_NAME}

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
        self.error_metrics = [self.errors_4xx, self.errors_5xx]
        if props.component_name is not None:
            # Requests that found no copy (scaled to zero): the scale-out signal.
            self.error_metrics.append(metric("NoCapacityInvocationFailures", "Maximum"))

        self.latency = alarm(
            self,
            "ModelLatencyP99",
            description=f"{endpoint_name}: p99 ModelLatency > {props.latency_p99_ms} ms",
            metric=self.model_latency_p99,
            # ModelLatency is reported in microseconds.
            threshold=props.latency_p99_ms * 1000,
            comparison=ABOVE,
            periods=3,
            datapoints=2,
        )
        self.server_errors = alarm(
            self,
            "Invocation5XXErrors",
            description=f"{endpoint_name}: {props.errors_5xx}+ 5xx errors a minute",
            metric=self.errors_5xx,
            threshold=props.errors_5xx,
            periods=2,
            datapoints=2,
        )
        # A rate, not a count: 4xx errors grow with traffic. It notifies but never rolls a deployment back:
        # 4xx answers are the callers' (bad uploads, wrong content types), and a burst of bad uploads during
        # a bake must not undo a good model. What a model causes shows as 5xx errors or latency.
        self.client_error_rate = alarm(
            self,
            "Invocation4XXRate",
            description=f"{endpoint_name}: over {props.rate_4xx_percent}% 4xx errors",
            metric=cloudwatch.MathExpression(
                expression="IF(invocations > 0, 100 * errors / invocations, 0)",
                using_metrics={"errors": self.errors_4xx, "invocations": self.invocations},
                label="Invocation4XXErrors %",
                period=PERIOD,
            ),
            threshold=props.rate_4xx_percent,
            comparison=ABOVE,
            periods=3,
            datapoints=2,
        )
        self.rollback_alarms = [self.latency, self.server_errors]
        self.all_alarms = [*self.rollback_alarms, self.client_error_rate]
        notify_on_change(self.all_alarms, destinations)


class EndpointDashboard(Construct):
    """One dashboard per stage: traffic, errors, latency, capacity, and the state of ``alarms``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dashboard_name: str,
        metrics: EndpointAlarms,
        alarms: list[cloudwatch.IAlarm],
    ) -> None:
        super().__init__(scope, construct_id)
        dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=dashboard_name, default_interval=Duration.hours(3)
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Invocations", left=[metrics.invocations], width=8),
            cloudwatch.GraphWidget(title="Errors", left=metrics.error_metrics, width=8),
            cloudwatch.GraphWidget(
                title="Latency (microseconds)",
                left=[metrics.model_latency_p50, metrics.model_latency_p99, metrics.overhead_latency_p99],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms (rollback first)", alarms=alarms, width=8),
            cloudwatch.GraphWidget(
                title="Utilization (%)", left=[metrics.cpu_utilization, metrics.gpu_utilization], width=8
            ),
            cloudwatch.GraphWidget(title="Instances reporting", left=[metrics.instance_count], width=8),
        )
