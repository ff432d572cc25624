"""dev's default serving mode: the model as an inference component on an endpoint that scales to zero.

What the templates promise: no instance while idle (managed instance scaling down to 0, copies to 0 after the
configured idle period), the first refused request starts one copy, a new model is a rolling update of the
component with rollback on the model's alarms, and the Lambda names the component with IAM scoped to it.
"""

from __future__ import annotations

import pytest

from stacks.instance_types import copy_requirements

from .conftest import synth_stage

RETRAINED_URL = "s3://dogbreed-dev-artifacts/training-output/job-3/output/model.tar.gz"


def only(resources: dict) -> tuple[str, dict]:
    assert len(resources) == 1, list(resources)
    return next(iter(resources.items()))


def alarm(synth, name: str) -> dict:
    (found,) = [
        a["Properties"]
        for logical_id, a in synth.resources("serving", "AWS::CloudWatch::Alarm").items()
        if logical_id.startswith(f"Component{name}")
    ]
    return found


def policy_id(synth, name: str) -> str:
    (found,) = [
        logical_id
        for logical_id in synth.resources("serving", "AWS::ApplicationAutoScaling::ScalingPolicy")
        if logical_id.startswith(f"Component{name}")
    ]
    return found


def policy(synth, name: str) -> dict:
    return synth.resources("serving", "AWS::ApplicationAutoScaling::ScalingPolicy")[policy_id(synth, name)][
        "Properties"
    ]


def test_dev_serves_an_inference_component_and_prod_stays_on_instances(dev, prod):
    assert dev.config.is_inference_component and not prod.config.is_inference_component
    assert prod.resources("serving", "AWS::SageMaker::InferenceComponent") == {}


def test_the_endpoint_has_no_model_and_no_instance_while_idle(dev):
    _, config = only(dev.resources("serving", "AWS::SageMaker::EndpointConfig"))
    properties = config["Properties"]
    (variant,) = properties["ProductionVariants"]
    assert "ModelName" not in variant  # the component places the model
    # One instance beyond the copies' maximum: a rolling update starts its new copy before it stops one.
    assert variant["ManagedInstanceScaling"] == {
        "Status": "ENABLED",
        "MinInstanceCount": 0,
        "MaxInstanceCount": dev.config.max_instances + 1,
    }
    assert variant["InitialInstanceCount"] == 1
    assert variant["InstanceType"] == dev.config.instance_type
    # Without a model on the variant the endpoint needs the role and the isolation itself.
    assert properties["ExecutionRoleArn"]["Fn::GetAtt"][0].startswith("ModelRole")
    assert properties["EnableNetworkIsolation"] is True
    assert "DataCaptureConfig" not in properties
    _, endpoint = only(dev.resources("serving", "AWS::SageMaker::Endpoint"))
    assert endpoint["Properties"]["EndpointName"] == "dogbreed-dev"
    assert "DeploymentConfig" not in endpoint["Properties"]  # model updates roll the component


def test_one_copy_takes_the_instances_gpu_and_a_small_cpu_and_memory_reservation(dev):
    _, component = only(dev.resources("serving", "AWS::SageMaker::InferenceComponent"))
    properties = component["Properties"]
    assert properties["InferenceComponentName"] == "dogbreed-dev-model"
    assert properties["VariantName"] == "AllTraffic"
    specification = properties["Specification"]
    model_id, _ = only(dev.resources("serving", "AWS::SageMaker::Model"))
    assert specification["ModelName"] == {"Fn::GetAtt": [model_id, "ModelName"]}
    # The GPU keeps it to one copy per instance; asking for most of the memory would leave it unplaceable.
    assert specification["ComputeResourceRequirements"] == {
        "NumberOfAcceleratorDevicesRequired": 1,
        "NumberOfCpuCoresRequired": 1,
        "MinMemoryRequiredInMb": 1024,
    }
    assert copy_requirements("ml.g5.12xlarge").accelerators == 4
    assert properties["RuntimeConfig"] == {"CopyCount": 1}


def test_a_new_model_is_a_rolling_update_rolled_back_on_the_models_alarms(dev):
    _, component = only(dev.resources("serving", "AWS::SageMaker::InferenceComponent"))
    deployment = component["Properties"]["DeploymentConfig"]
    rolling = deployment["RollingUpdatePolicy"]
    assert rolling["MaximumBatchSize"] == {"Type": "COPY_COUNT", "Value": 1}
    assert rolling["WaitIntervalInSeconds"] == dev.config.baking_period_seconds
    rollback = {a["AlarmName"]["Ref"] for a in deployment["AutoRollbackConfiguration"]["Alarms"]}
    alarms = dev.resources("serving", "AWS::CloudWatch::Alarm")
    watched = {alarms[i]["Properties"]["MetricName"] for i in rollback}
    assert watched == {"ModelLatency", "Invocation5XXErrors"}
    for logical_id in rollback:
        # The component's own metrics: a component's invocations are reported under its name.
        assert alarms[logical_id]["Properties"]["Dimensions"] == [
            {"Name": "InferenceComponentName", "Value": "dogbreed-dev-model"}
        ]


def test_copies_scale_out_with_traffic_but_only_the_idle_rule_takes_them_down(dev):
    _, target = only(dev.resources("serving", "AWS::ApplicationAutoScaling::ScalableTarget"))
    assert target["Properties"]["ResourceId"] == "inference-component/dogbreed-dev-model"
    assert target["Properties"]["ScalableDimension"] == "sagemaker:inference-component:DesiredCopyCount"
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (0, 2)
    (component_id,) = dev.resources("serving", "AWS::SageMaker::InferenceComponent")
    assert target["DependsOn"] == [component_id]  # named, not referenced
    tracking = policy(dev, "CopiesInvocationsPerCopy")["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerInferenceComponentInvocationsPerCopy"
    }
    assert tracking["DisableScaleIn"] is True
    assert tracking["TargetValue"] == dev.config.target_invocations_per_instance


def test_the_first_refused_request_starts_exactly_one_copy(dev):
    wake = alarm(dev, "ScaleOutFromZero")
    assert wake["MetricName"] == "NoCapacityInvocationFailures"
    assert wake["Dimensions"] == [{"Name": "InferenceComponentName", "Value": "dogbreed-dev-model"}]
    # One refused request in a minute is enough.
    assert (wake["Statistic"], wake["ComparisonOperator"], wake["Threshold"]) == (
        "Maximum",
        "GreaterThanOrEqualToThreshold",
        1,
    )
    assert (wake["Period"], wake["EvaluationPeriods"]) == (60, 1)
    (action,) = wake["AlarmActions"]
    step = policy(dev, "StartOneCopy")["StepScalingPolicyConfiguration"]
    assert action == {"Ref": policy_id(dev, "StartOneCopy")}
    # Exact, not +1: the alarm asks again each minute of a cold start, which must not start a second one.
    assert step["AdjustmentType"] == "ExactCapacity"
    assert step["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]


def test_the_idle_period_before_zero_is_the_stages_setting(dev, tmp_path):
    idle = alarm(dev, "IdleToZero")
    assert idle["EvaluationPeriods"] == dev.config.scale_to_zero_idle_minutes == 30
    assert (idle["ComparisonOperator"], idle["Threshold"], idle["TreatMissingData"]) == (
        "LessThanThreshold",
        1,
        "breaching",  # no data at all is idle
    )
    # A refused request counts as activity, so a cold start is not undone while it is under way.
    expression = next(m["Expression"] for m in idle["Metrics"] if "Expression" in m)
    assert expression == "FILL(invocations, 0) + FILL(refused, 0)"
    step = policy(dev, "StopAllCopies")["StepScalingPolicyConfiguration"]
    assert step["AdjustmentType"] == "ExactCapacity"
    assert step["StepAdjustments"] == [{"MetricIntervalUpperBound": 0, "ScalingAdjustment": 0}]
    shorter = synth_stage(tmp_path, "dev", scale_to_zero_idle_minutes=20)
    assert alarm(shorter, "IdleToZero")["EvaluationPeriods"] == 20


def test_the_lambda_names_the_component_and_may_invoke_only_it_on_this_endpoint(dev):
    _, function = only(dev.resources("api", "AWS::Lambda::Function"))
    assert (
        function["Properties"]["Environment"]["Variables"]["INFERENCE_COMPONENT_NAME"] == "dogbreed-dev-model"
    )
    statements = [
        s
        for p in dev.resources("api", "AWS::IAM::ManagedPolicy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "InvokeThisEndpointOnly"
    ]
    (invoke,) = statements
    outputs = sorted(r["Fn::GetStackOutput"]["OutputName"] for r in invoke["Resource"])
    assert len(outputs) == 2
    assert any("InferenceComponentArn" in o for o in outputs) and any("EndpointArn" in o for o in outputs)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    return synth_stage(tmp_path_factory.mktemp("ic-retrained"), "dev", model_data_url=RETRAINED_URL)


def test_retraining_updates_the_component_in_place_and_leaves_the_endpoint_alone(dev, retrained):
    (component_before,) = dev.resources("serving", "AWS::SageMaker::InferenceComponent")
    (component_after,) = retrained.resources("serving", "AWS::SageMaker::InferenceComponent")
    # Same logical id; its ModelName GetAtt now names the new, replaced Model: an in-place update
    # (no property of an inference component requires replacement), which SageMaker rolls.
    assert component_before == component_after
    _, model = only(retrained.resources("serving", "AWS::SageMaker::Model"))
    assert model["Properties"]["PrimaryContainer"]["ModelDataUrl"] == RETRAINED_URL
    for kind in ("AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Endpoint"):
        assert retrained.resources("serving", kind) == dev.resources("serving", kind), kind
    assert retrained.templates["api"] == dev.templates["api"]


def test_without_autoscaling_the_component_keeps_its_copy(tmp_path):
    fixed = synth_stage(tmp_path, "dev", autoscaling_enabled=False)
    assert fixed.resources("serving", "AWS::ApplicationAutoScaling::ScalableTarget") == {}
    assert len(fixed.resources("serving", "AWS::SageMaker::InferenceComponent")) == 1


def test_a_copy_that_cannot_start_is_reported_after_fifteen_minutes_of_refusals(dev):
    """A model rolled out while the stage idled never bakes under traffic; if its copy cannot start, every
    request is refused and the Lambda keeps answering model_starting: someone must hear of it."""
    stuck = alarm(dev, "NoCopyStarts")
    assert stuck["MetricName"] == "NoCapacityInvocationFailures"
    assert (stuck["EvaluationPeriods"], stuck["DatapointsToAlarm"], stuck["Threshold"]) == (15, 15, 1)
    (topic_id,) = dev.resources("serving", "AWS::SNS::Topic")
    assert stuck["AlarmActions"] == [{"Ref": topic_id}] and stuck["OKActions"] == [{"Ref": topic_id}]


def test_the_components_containers_log_to_a_group_the_stack_owns(dev):
    groups = {
        g["Properties"].get("LogGroupName") for g in dev.resources("serving", "AWS::Logs::LogGroup").values()
    }
    assert "/aws/sagemaker/InferenceComponents/dogbreed-dev-model" in groups
    statements = [
        s
        for p in dev.resources("serving", "AWS::IAM::ManagedPolicy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "WriteEndpointLogs"
    ]
    (write,) = statements
    assert any("InferenceComponents/dogbreed-dev-model:log-stream:*" in str(r) for r in write["Resource"])
