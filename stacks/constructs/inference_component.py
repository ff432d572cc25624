"""The model as an inference component (serving_mode inference_component): copies that scale to zero.

The endpoint's instances are managed by SageMaker (ManagedInstanceScaling, minimum 0): with no copy
left, the instances go too, and the stage bills no instance hour while idle
(https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-zero-instances.html). Copies
scale on three rules:

* out with traffic: target tracking on ``SageMakerInferenceComponentInvocationsPerCopy`` (scale-in off:
  the idle rule below takes them down, at the idle period the stage configures, which target tracking's
  own fixed scale-in alarm could not);
* to zero after ``scale_to_zero_idle_minutes`` without an invocation or a refused request;
* from zero to one on the first refused request (``NoCapacityInvocationFailures``), which target tracking
  cannot do: with no copy there is no invocations-per-copy to track.

A new model is a rolling update of the copies (``DeploymentConfig``), rolled back on the model's alarms;
the endpoint, its name and the Lambda stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Duration
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.constructs.alarms import PERIOD, alarm
from stacks.constructs.endpoint_alarms import VARIANT_NAME
from stacks.instance_types import copy_requirements

# Loading torch, the weights and a CUDA context on a cold GPU instance; the default (60-3600 s) is not
# enough on the first pull of the multi-GB DLC. The endpoint (instance mode) and a copy use the same.
CONTAINER_STARTUP_SECONDS = 600

SAGEMAKER_SCALING_ROLE = "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
COPY_COUNT_DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
# The scale-out from zero is asked again while the alarm stays in ALARM; a second ask within this time is
# ignored (the value of AWS's own example).
SCALE_OUT_COOLDOWN = Duration.seconds(60)
# Refused requests for this long are no cold start any more (AWS: about 5 minutes; 9 in a third-party run).
STUCK_MINUTES = 15


def service_linked_scaling_role(scope: Construct) -> iam.IRole:
    """Application Auto Scaling acts on SageMaker through its service-linked role (created on first use
    when the template names it); left alone, ScalableTarget creates an extra role the service never uses."""
    return iam.Role.from_role_arn(
        scope,
        "ServiceLinkedRole",
        f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/aws-service-role/"
        f"sagemaker.application-autoscaling.amazonaws.com/{SAGEMAKER_SCALING_ROLE}",
        mutable=False,
    )


@dataclass(frozen=True)
class ModelComponentProps:
    # inference_component_name, fixed: the scalable target and the Lambda name it.
    component_name: str
    # The endpoint's instance type, whose accelerators, cores and memory one copy takes.
    instance_type: str
    baking_period_seconds: int
    # autoscaling_enabled: copies scale with traffic and to zero; else one copy stays.
    autoscaling: bool
    # One copy per instance: the copies' maximum.
    max_instances: int
    target_invocations_per_instance: int
    scale_out_cooldown_seconds: int
    scale_to_zero_idle_minutes: int


class ModelComponent(Construct):
    """``AWS::SageMaker::InferenceComponent`` for the stage's Model on the stage's endpoint.

    CloudFormation updates a component in place for a new ``ModelName`` (no property of it requires
    replacement: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-sagemaker-inferencecomponent.html),
    which SageMaker runs as the rolling update below.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: ModelComponentProps,
        endpoint: sagemaker.CfnEndpoint,
        model: sagemaker.CfnModel,
        rollback_alarms: list[cloudwatch.IAlarm],
        deployment_timeout_seconds: int,
    ) -> None:
        super().__init__(scope, construct_id)
        needs = copy_requirements(props.instance_type)
        batch = sagemaker.CfnInferenceComponent.InferenceComponentCapacitySizeProperty(
            type="COPY_COUNT", value=1
        )
        self.component = sagemaker.CfnInferenceComponent(
            self,
            "Component",
            inference_component_name=props.component_name,
            endpoint_name=endpoint.attr_endpoint_name,
            variant_name=VARIANT_NAME,
            specification=sagemaker.CfnInferenceComponent.InferenceComponentSpecificationProperty(
                model_name=model.attr_model_name,
                startup_parameters=sagemaker.CfnInferenceComponent.InferenceComponentStartupParametersProperty(
                    model_data_download_timeout_in_seconds=CONTAINER_STARTUP_SECONDS,
                    container_startup_health_check_timeout_in_seconds=CONTAINER_STARTUP_SECONDS,
                ),
                compute_resource_requirements=sagemaker.CfnInferenceComponent.InferenceComponentComputeResourceRequirementsProperty(
                    number_of_accelerator_devices_required=needs.accelerators or None,
                    number_of_cpu_cores_required=needs.cpu_cores,
                    min_memory_required_in_mb=needs.memory_mb,
                ),
            ),
            # One copy at creation (a component created with none is refused, by third-party reports);
            # autoscaling owns the count from then on.
            runtime_config=sagemaker.CfnInferenceComponent.InferenceComponentRuntimeConfigProperty(
                copy_count=1
            ),
            deployment_config=sagemaker.CfnInferenceComponent.InferenceComponentDeploymentConfigProperty(
                rolling_update_policy=sagemaker.CfnInferenceComponent.InferenceComponentRollingUpdatePolicyProperty(
                    maximum_batch_size=batch,
                    rollback_maximum_batch_size=batch,
                    wait_interval_in_seconds=props.baking_period_seconds,
                    maximum_execution_timeout_in_seconds=deployment_timeout_seconds,
                ),
                auto_rollback_configuration=sagemaker.CfnInferenceComponent.AutoRollbackConfigurationProperty(
                    alarms=[
                        sagemaker.CfnInferenceComponent.AlarmProperty(alarm_name=alarm.alarm_name)
                        for alarm in rollback_alarms
                    ]
                ),
            ),
        )
        self.component_arn = self.component.attr_inference_component_arn
        # Alarms for the stage's alarm destinations (the scaling alarms act, they do not notify).
        self.alarms: list[cloudwatch.Alarm] = []
        if props.autoscaling:
            self._scale_to_zero(props)

    def _scale_to_zero(self, props: ModelComponentProps) -> None:
        name = props.component_name
        target = appscaling.ScalableTarget(
            self,
            "Copies",
            role=service_linked_scaling_role(self),
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"inference-component/{name}",
            scalable_dimension=COPY_COUNT_DIMENSION,
            min_capacity=0,
            # One copy per instance: a copy takes every GPU of one.
            max_capacity=props.max_instances,
        )
        # By name, which CloudFormation gives no attribute for: state the order.
        target.node.add_dependency(self.component)
        target.scale_to_track_metric(
            "InvocationsPerCopy",
            target_value=props.target_invocations_per_instance,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_INFERENCE_COMPONENT_INVOCATIONS_PER_COPY,
            scale_out_cooldown=Duration.seconds(props.scale_out_cooldown_seconds),
            disable_scale_in=True,
        )

        def metric(metric_name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/SageMaker",
                metric_name=metric_name,
                dimensions_map={"InferenceComponentName": name},
                statistic=statistic,
                period=PERIOD,
            )

        refused = metric("NoCapacityInvocationFailures", "Maximum")
        # From zero: one refused request in a minute is enough (Maximum >= 1; AWS's CLI example sums and
        # needs more than one). Exactly one copy: while the alarm stays in ALARM it asks again each minute,
        # and "+1" would start a second instance for the same cold start.
        wake = alarm(
            self,
            "ScaleOutFromZero",
            description=f"{name}: a request found no copy; start one",
            metric=refused,
            threshold=1,
            periods=1,
        )
        wake_action = appscaling.StepScalingAction(
            self,
            "StartOneCopy",
            scaling_target=target,
            adjustment_type=appscaling.AdjustmentType.EXACT_CAPACITY,
            metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM,
            cooldown=SCALE_OUT_COOLDOWN,
        )
        wake_action.add_adjustment(adjustment=1, lower_bound=0)
        wake.add_alarm_action(cloudwatch_actions.ApplicationScalingAction(wake_action))

        # To zero: no invocation and no refused request for the whole idle period (missing data is idle).
        # Counting refused requests keeps a cold start from being undone: the minute a request was refused
        # is not idle, so the period restarts while the first copy comes up.
        activity = cloudwatch.MathExpression(
            expression="FILL(invocations, 0) + FILL(refused, 0)",
            using_metrics={
                "invocations": metric("Invocations", "Sum"),
                "refused": metric("NoCapacityInvocationFailures", "Sum"),
            },
            label="Invocations + NoCapacityInvocationFailures",
            period=PERIOD,
        )
        idle = cloudwatch.Alarm(
            self,
            "IdleToZero",
            alarm_description=f"{name}: no request for {props.scale_to_zero_idle_minutes} minutes; no copy",
            metric=activity,
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=props.scale_to_zero_idle_minutes,
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
        )
        idle_action = appscaling.StepScalingAction(
            self,
            "StopAllCopies",
            scaling_target=target,
            adjustment_type=appscaling.AdjustmentType.EXACT_CAPACITY,
            metric_aggregation_type=appscaling.MetricAggregationType.MAXIMUM,
        )
        idle_action.add_adjustment(adjustment=0, upper_bound=0)
        idle.add_alarm_action(cloudwatch_actions.ApplicationScalingAction(idle_action))
        # A copy that cannot start (a model deployed while the stage idled, and never baked under traffic)
        # leaves every request refused: after 15 minutes of that, someone must look.
        self.alarms.append(
            alarm(
                self,
                "NoCopyStarts",
                description=f"{name}: requests refused for 15 minutes: no copy could start (see the "
                f"component's log group /aws/sagemaker/InferenceComponents/{name})",
                metric=refused,
                threshold=1,
                periods=STUCK_MINUTES,
                datapoints=STUCK_MINUTES,
            )
        )
