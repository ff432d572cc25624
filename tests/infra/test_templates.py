"""Fine-grained template assertions for what matters in each stack, on both stages."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from .conftest import synth_stage

STAGES = ["dev", "prod"]


def only(resources: dict) -> dict:
    assert len(resources) == 1, list(resources)
    return next(iter(resources.values()))


def statements_by_sid(synth, kind: str) -> dict[str, dict]:
    policies = synth.resources(kind, "AWS::IAM::ManagedPolicy")
    result = {}
    for policy in policies.values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            result[statement["Sid"] if "Sid" in statement else repr(statement["Action"])] = statement
    return result


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def same_items(left: list, right: list) -> bool:
    return sorted(json.dumps(x, sort_keys=True) for x in left) == sorted(
        json.dumps(x, sort_keys=True) for x in right
    )


# --- storage -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_key_rotates_and_is_retained(stages, stage):
    template = stages[stage].template("storage")
    template.resource_count_is("AWS::KMS::Key", 1)
    template.has_resource(
        "AWS::KMS::Key",
        {
            "Properties": {"EnableKeyRotation": True},
            "DeletionPolicy": "RetainExceptOnCreate",
            "UpdateReplacePolicy": "Retain",
        },
    )
    template.has_resource_properties("AWS::KMS::Alias", {"AliasName": f"alias/dogbreed-{stage}"})


@pytest.mark.parametrize("stage", STAGES)
def test_artifact_bucket_is_private_encrypted_versioned_and_logged(stages, stage):
    synth = stages[stage]
    template = synth.template("storage")
    template.has_resource(
        "AWS::S3::Bucket",
        {
            "DeletionPolicy": "RetainExceptOnCreate",
            "Properties": {
                "BucketName": {
                    "Fn::Join": [
                        "",
                        [f"dogbreed-{stage}-", {"Ref": "AWS::AccountId"}, "-", {"Ref": "AWS::Region"}],
                    ]
                },
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {
                            "BucketKeyEnabled": True,
                            "ServerSideEncryptionByDefault": {
                                "SSEAlgorithm": "aws:kms",
                                "KMSMasterKeyID": {
                                    "Fn::GetAtt": [Match.string_like_regexp("ProjectKey"), "Arn"]
                                },
                            },
                        }
                    ]
                },
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "VersioningConfiguration": {"Status": "Enabled"},
                "LoggingConfiguration": {
                    "DestinationBucketName": {"Ref": Match.string_like_regexp("AccessLogs")},
                    "LogFilePrefix": "artifacts-bucket/",
                },
            },
        },
    )


@pytest.mark.parametrize("stage", STAGES)
def test_every_bucket_denies_plain_http(stages, stage):
    synth = stages[stage]
    buckets = synth.resources("storage", "AWS::S3::Bucket")
    policies = synth.resources("storage", "AWS::S3::BucketPolicy")
    assert len(buckets) == 2
    secured = set()
    for policy in policies.values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement.get("Condition", {}).get("Bool") == {
                "aws:SecureTransport": "false"
            }:
                secured.add(policy["Properties"]["Bucket"]["Ref"])
    assert secured == set(buckets)


@pytest.mark.parametrize("stage", STAGES)
def test_lifecycle_expires_checkpoints_and_old_versions(stages, stage):
    synth = stages[stage]
    config = synth.config
    artifact = next(
        b for b in synth.resources("storage", "AWS::S3::Bucket").values() if "BucketName" in b["Properties"]
    )
    rules = {rule["Id"]: rule for rule in artifact["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-checkpoints"]["Prefix"] == "checkpoints/"
    assert rules["expire-checkpoints"]["ExpirationInDays"] == config.checkpoint_expiration_days
    assert rules["expire-old-versions"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": config.noncurrent_version_expiration_days
    }
    assert rules["expire-old-versions"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert rules["expire-data-capture"]["ExpirationInDays"] == config.data_capture_expiration_days


# --- training ----------------------------------------------------------------------------------------------


def bucket_arn(stage: str, suffix: str = "") -> dict:
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                f":s3:::dogbreed-{stage}-",
                {"Ref": "AWS::AccountId"},
                "-",
                {"Ref": "AWS::Region"},
                *([suffix] if suffix else []),
            ],
        ]
    }


@pytest.mark.parametrize("stage", STAGES)
def test_training_role_reads_data_writes_output_and_checkpoints_only(stages, stage):
    synth = stages[stage]
    template = synth.template("training")
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [Match.object_like({"Principal": {"Service": "sagemaker.amazonaws.com"}})]
            }
        },
    )
    statements = statements_by_sid(synth, "training")
    assert statements["ReadTrainingInputs"]["Action"] == "s3:GetObject"
    assert same_items(
        statements["ReadTrainingInputs"]["Resource"],
        [
            bucket_arn(stage, "/data/*"),
            bucket_arn(stage, "/checkpoints/*"),
            bucket_arn(stage, "/code/*"),
            bucket_arn(stage, "/weights/*"),
        ],
    )
    assert statements["WriteOutputAndCheckpoints"]["Action"] == ["s3:AbortMultipartUpload", "s3:PutObject"]
    assert same_items(
        statements["WriteOutputAndCheckpoints"]["Resource"],
        [bucket_arn(stage, "/training-output/*"), bucket_arn(stage, "/checkpoints/*")],
    )
    assert statements["ListProjectPrefixes"]["Resource"] == bucket_arn(stage)
    assert statements["ListProjectPrefixes"]["Condition"] == {
        "StringLike": {"s3:prefix": ["data/*", "checkpoints/*", "code/*", "weights/*", "training-output/*"]}
    }
    s3_actions = {a for s in statements.values() for a in as_list(s["Action"]) if a.startswith("s3:")}
    assert s3_actions == {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"}


@pytest.mark.parametrize("stage", STAGES)
def test_training_role_pulls_the_training_dlc_of_the_region(stages, stage):
    synth = stages[stage]
    statements = statements_by_sid(synth, "training")
    pull = next(s for s in statements.values() if "ecr:BatchGetImage" in as_list(s["Action"]))
    joined = pull["Resource"]["Fn::Join"][1]
    assert {"Fn::FindInMap": ["DlcAccounts", {"Ref": "AWS::Region"}, "account"]} in joined
    assert joined[-1] == ":repository/pytorch-training"
    mapping = synth.templates["training"]["Mappings"]["DlcAccounts"]
    assert mapping["us-east-1"] == {"account": "763104351884"}
    assert mapping["af-south-1"] == {"account": "626614931356"}


@pytest.mark.parametrize("stage", STAGES)
def test_training_logs_and_metrics_are_scoped(stages, stage):
    statements = statements_by_sid(stages[stage], "training")
    assert statements["PutTrainingMetrics"]["Resource"] == "*"
    assert statements["PutTrainingMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}
    }
    log_resource = statements["WriteTrainingLogs"]["Resource"]["Fn::Join"][1]
    assert log_resource[-1] == ":log-group:/aws/sagemaker/TrainingJobs:*"
    assert statements["UseProjectKey"]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]


@pytest.mark.parametrize("stage", STAGES)
def test_training_outputs_for_the_launcher(stages, stage):
    outputs = stages[stage].templates["training"]["Outputs"]
    assert {
        "TrainingRoleArn",
        "BucketName",
        "DataPrefix",
        "OutputPrefix",
        "CheckpointPrefix",
        "KmsKeyArn",
    } <= set(outputs)
    assert outputs["DataPrefix"]["Value"] == "data/"
    assert outputs["OutputPrefix"]["Value"] == "training-output/"
    assert outputs["CheckpointPrefix"]["Value"] == "checkpoints/"
    assert outputs["ModelsPrefix"]["Value"] == "models/"
    assert outputs["TrainingRoleArn"]["Value"]["Fn::GetAtt"][1] == "Arn"
    assert (
        "Fn::GetStackOutput" in outputs["KmsKeyArn"]["Value"]
        or "Fn::ImportValue" in outputs["KmsKeyArn"]["Value"]
    )
    assert stages[stage].resources("training", "AWS::EC2::Instance") == {}


# --- serving -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_model_uses_the_pinned_inference_dlc_with_network_isolation(stages, stage):
    synth = stages[stage]
    model = only(synth.resources("serving", "AWS::SageMaker::Model"))["Properties"]
    assert model["EnableNetworkIsolation"] is True
    assert "ModelName" not in model  # generated, so a new artifact replaces the model
    container = model["PrimaryContainer"]
    if synth.config.model_from_package:
        # The package names image and artifact (training.register put the stage's DLC image there).
        assert container["ModelPackageName"] == synth.config.model_package_arn
        assert "Image" not in container and "ModelDataUrl" not in container
    else:
        assert container["ModelDataUrl"] == "s3://example-bucket/model/model.tar.gz"
        image = container["Image"]["Fn::Join"][1]
        assert image[0] == {"Fn::FindInMap": ["DlcAccounts", {"Ref": "AWS::Region"}, "account"]}
        assert image[-1] == f"/pytorch-inference:{synth.config.inference_image_tag}"
    # The model server gives up before the Lambda's read timeout; TS_DEFAULT_RESPONSE_TIMEOUT is the one
    # TorchServe applies (stacks/model_environment.py; read back from the real TorchServe in
    # tests/serving/test_torchserve_settings.py).
    server_timeout = synth.config.model_server_timeout_seconds
    assert 1 <= server_timeout < synth.config.endpoint_read_timeout_seconds
    assert container["Environment"]["TS_DEFAULT_RESPONSE_TIMEOUT"] == str(server_timeout)
    assert container["Environment"]["SAGEMAKER_MODEL_SERVER_TIMEOUT"] == str(server_timeout)
    assert not any(name.startswith("SAGEMAKER_TS_") for name in container["Environment"])
    # The worker layout the benchmark derived reaches TorchServe (via the toolkit) and torch.
    assert container["Environment"]["SAGEMAKER_MODEL_SERVER_WORKERS"] == str(synth.config.inference_workers)
    assert container["Environment"]["OMP_NUM_THREADS"] == str(synth.config.inference_threads_per_worker)


@pytest.mark.parametrize("stage", STAGES)
def test_model_role_reads_only_its_artifact_and_pulls_only_its_image(stages, stage):
    synth = stages[stage]
    statements = statements_by_sid(synth, "serving")
    assert statements["ReadModelArtifact"]["Action"] == "s3:GetObject"
    if synth.config.model_from_package:
        # The object the package names, as the deploy-time check read it from SageMaker.
        (check_id,) = synth.resources("serving", "Custom::ModelPackageCheck")
        assert statements["ReadModelArtifact"]["Resource"] == {
            "Fn::Join": [
                "",
                [
                    "arn:",
                    {"Ref": "AWS::Partition"},
                    ":s3:::",
                    {"Fn::GetAtt": [check_id, "ArtifactBucket"]},
                    "/",
                    {"Fn::GetAtt": [check_id, "ArtifactKey"]},
                ],
            ]
        }
    else:
        assert statements["ReadModelArtifact"]["Resource"] == {
            "Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::example-bucket/model/model.tar.gz"]]
        }
    assert statements["DecryptModelArtifact"]["Condition"] == {
        "StringEquals": {
            "kms:ViaService": {"Fn::Join": ["", ["s3.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
        }
    }
    pull = next(s for s in statements.values() if "ecr:BatchGetImage" in as_list(s["Action"]))
    assert pull["Resource"]["Fn::Join"][1][-1] == ":repository/pytorch-inference"
    resources = statements["WriteEndpointLogs"]["Resource"]
    logs = [r["Fn::Join"][1][-1] for r in (resources if isinstance(resources, list) else [resources])]
    expected = [f":log-group:/aws/sagemaker/Endpoints/dogbreed-{stage}:log-stream:*"]
    if synth.config.is_inference_component:  # its containers log to the component's group
        expected.append(f":log-group:/aws/sagemaker/InferenceComponents/dogbreed-{stage}-model:log-stream:*")
    assert logs == expected
    capture = "WriteDataCapture" in statements
    assert capture is synth.config.data_capture_enabled
    # The stack owns the log group, so the role cannot create one (unencrypted, kept forever) itself.
    assert not [s for s in statements.values() if "logs:CreateLogGroup" in as_list(s["Action"])]


@pytest.mark.parametrize("stage", STAGES)
def test_model_role_can_read_the_rollback_alarms_and_publish_instance_metrics(instance_stages, stage):
    synth = instance_stages[stage]
    statements = statements_by_sid(synth, "serving")
    alarm_ids = sorted(synth.resources("serving", "AWS::CloudWatch::Alarm"))
    describe = statements["ReadRollbackAlarms"]
    assert describe["Action"] == "cloudwatch:DescribeAlarms"
    # Exactly the endpoint's rollback alarms, which auto-rollback reads with this role.
    endpoint = only(synth.resources("serving", "AWS::SageMaker::Endpoint"))["Properties"]
    rollback_names = [
        a["AlarmName"] for a in endpoint["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    ]
    assert sorted(r["Fn::GetAtt"][0] for r in describe["Resource"]) == sorted(
        name["Ref"] for name in rollback_names
    )
    assert set(alarm_ids) >= {name["Ref"] for name in rollback_names}
    metrics = statements["PutEndpointInstanceMetrics"]
    assert metrics["Action"] == "cloudwatch:PutMetricData"
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}}


@pytest.mark.parametrize("stage", STAGES)
def test_endpoint_log_group_is_declared_encrypted_with_retention_before_the_model(stages, stage):
    synth = stages[stage]
    groups = synth.resources("serving", "AWS::Logs::LogGroup")
    (group_id,) = [
        logical_id
        for logical_id, group in groups.items()
        if group["Properties"].get("LogGroupName") == f"/aws/sagemaker/Endpoints/dogbreed-{stage}"
    ]
    group = groups[group_id]
    assert group["Properties"]["RetentionInDays"] == synth.config.log_retention_days
    assert "KmsKeyId" in group["Properties"]
    assert group["DeletionPolicy"] == ("RetainExceptOnCreate" if synth.config.production else "Delete")
    (model,) = synth.resources("serving", "AWS::SageMaker::Model").values()
    assert group_id in model["DependsOn"]


@pytest.mark.parametrize("stage", STAGES)
def test_endpoint_config_is_gpu_with_min_instances_and_no_kms_on_local_nvme(instance_stages, stage):
    synth = instance_stages[stage]
    config = synth.config
    endpoint_config = only(synth.resources("serving", "AWS::SageMaker::EndpointConfig"))["Properties"]
    assert "EndpointConfigName" not in endpoint_config
    (variant,) = endpoint_config["ProductionVariants"]
    assert variant["InstanceType"] == "ml.g4dn.xlarge"
    assert variant["InitialInstanceCount"] == config.min_instances
    assert variant["VariantName"] == "AllTraffic"
    model_id = next(iter(synth.resources("serving", "AWS::SageMaker::Model")))
    assert variant["ModelName"] == {"Fn::GetAtt": [model_id, "ModelName"]}
    # g4dn has local NVMe storage: SageMaker rejects a KmsKeyId for it.
    assert "KmsKeyId" not in endpoint_config


def test_prod_captures_data_encrypted_with_the_project_key(prod):
    endpoint_config = only(prod.resources("serving", "AWS::SageMaker::EndpointConfig"))["Properties"]
    capture = endpoint_config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == prod.config.data_capture_sampling_percent
    assert "Fn::GetStackOutput" in capture["KmsKeyId"] or "Fn::ImportValue" in capture["KmsKeyId"]
    assert capture["DestinationS3Uri"]["Fn::Join"][1][-1] == "/data-capture"


def test_dev_does_not_capture_data(dev):
    endpoint_config = only(dev.resources("serving", "AWS::SageMaker::EndpointConfig"))["Properties"]
    assert "DataCaptureConfig" not in endpoint_config


@pytest.mark.parametrize("stage", STAGES)
def test_endpoint_has_fixed_name_and_blue_green_with_rollback_on_what_the_model_causes(
    instance_stages, stage
):
    synth = instance_stages[stage]
    endpoint = only(synth.resources("serving", "AWS::SageMaker::Endpoint"))["Properties"]
    assert endpoint["EndpointName"] == f"dogbreed-{stage}"
    alarms = synth.resources("serving", "AWS::CloudWatch::Alarm")
    rollback = endpoint["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    metrics = {alarms[a["AlarmName"]["Ref"]]["Properties"].get("MetricName") for a in rollback}
    # Latency and 5xx errors are the model's; 4xx answers are the callers' and never roll back a model.
    assert metrics == {"ModelLatency", "Invocation5XXErrors"}
    policy = endpoint["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    routing = policy["TrafficRoutingConfiguration"]
    assert routing["Type"] == synth.config.traffic_routing
    assert routing["WaitIntervalInSeconds"] == synth.config.baking_period_seconds
    if synth.config.traffic_routing == "CANARY":
        assert routing["CanarySize"] == {"Type": "CAPACITY_PERCENT", "Value": synth.config.canary_percent}
    assert 600 <= policy["MaximumExecutionTimeoutInSeconds"] <= 14400
    # SageMaker rejects a timeout that does not exceed the deployment's waits.
    bakes = 2 if synth.config.traffic_routing == "CANARY" else 1
    waits = bakes * routing["WaitIntervalInSeconds"] + policy["TerminationWaitInSeconds"]
    assert policy["MaximumExecutionTimeoutInSeconds"] > waits
    # A model update keeps the instance count autoscaling reached, instead of resetting it to the new
    # config's InitialInstanceCount (UpdateEndpoint's default) in the middle of a deployment under load.
    assert endpoint["RetainAllVariantProperties"] is True
    assert "ExcludeRetainedVariantProperties" not in endpoint


@pytest.mark.parametrize("stage", STAGES)
def test_alarms_watch_latency_5xx_and_4xx_rate_of_this_endpoint(instance_stages, stage):
    synth = instance_stages[stage]
    config = synth.config
    template = synth.template("serving")
    dimensions = [
        {"Name": "EndpointName", "Value": f"dogbreed-{stage}"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "ModelLatency",
            "ExtendedStatistic": "p99",
            "Threshold": config.alarm_latency_p99_ms * 1000,
            "Dimensions": dimensions,
            "AlarmActions": [Match.any_value()],
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"MetricName": "Invocation5XXErrors", "Statistic": "Sum", "Threshold": config.alarm_5xx_errors},
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Threshold": config.alarm_4xx_rate_percent,
            "Metrics": Match.array_with(
                [Match.object_like({"Expression": "IF(invocations > 0, 100 * errors / invocations, 0)"})]
            ),
        },
    )
    template.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})


@pytest.mark.parametrize("stage", STAGES)
def test_api_alarms_watch_what_callers_see_before_the_handler_answers(stages, stage):
    synth = stages[stage]
    alarms = list(synth.resources("api", "AWS::CloudWatch::Alarm").values())
    by_metric = {alarm["Properties"]["MetricName"]: alarm["Properties"] for alarm in alarms}
    assert set(by_metric) == {"Errors", "Throttles", "ProvisionedConcurrencySpilloverInvocations"}
    (function_id,) = synth.resources("api", "AWS::Lambda::Function")
    for metric in ("Errors", "Throttles"):
        alarm = by_metric[metric]
        assert alarm["Namespace"] == "AWS/Lambda" and alarm["Statistic"] == "Sum"
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]
        assert alarm["Threshold"] == 1 and alarm["DatapointsToAlarm"] == 2
    spillover = by_metric["ProvisionedConcurrencySpilloverInvocations"]
    # On the alias, where provisioned concurrency lives: the function's own metric would mix in $LATEST.
    assert {d["Name"] for d in spillover["Dimensions"]} == {"FunctionName", "Resource"}
    assert spillover["Period"] == 300 and spillover["EvaluationPeriods"] == 3
    # Every alarm notifies the stage's one topic, the serving stack's (imported, not a second topic).
    synth.template("api").resource_count_is("AWS::SNS::Topic", 0)
    for alarm in alarms:
        (action,) = alarm["Properties"]["AlarmActions"]  # no alarm_topic_arn in cdk.json
        output = action["Fn::GetStackOutput"]
        assert (
            output["StackName"] == f"dogbreed-{stage}-serving"
            and "AlarmsNotificationsTopic" in output["OutputName"]
        )
        assert alarm["Properties"]["OKActions"] == [action]


def test_without_provisioned_concurrency_there_is_no_spillover_alarm(tmp_path):
    synth = synth_stage(
        tmp_path, "dev", lambda_provisioned_concurrency=0, lambda_provisioned_concurrency_max=0
    )
    metrics = {
        a["Properties"]["MetricName"] for a in synth.resources("api", "AWS::CloudWatch::Alarm").values()
    }
    assert metrics == {"Errors", "Throttles"}


@pytest.mark.parametrize("stage", STAGES)
def test_endpoint_scales_on_invocations_per_instance(instance_stages, stage):
    synth = instance_stages[stage]
    config = synth.config
    template = synth.template("serving")
    target = only(synth.resources("serving", "AWS::ApplicationAutoScaling::ScalableTarget"))
    assert target["Properties"]["MinCapacity"] == config.min_instances
    assert target["Properties"]["MaxCapacity"] == config.max_instances
    assert target["Properties"]["ResourceId"] == f"endpoint/dogbreed-{stage}/variant/AllTraffic"
    assert target["Properties"]["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert any("Endpoint" in dep for dep in as_list(target.get("DependsOn", [])))
    # The service-linked role Application Auto Scaling uses for SageMaker, not an unused role of our own.
    role_arn = "".join(
        p if isinstance(p, str) else "" for p in target["Properties"]["RoleARN"]["Fn::Join"][1]
    )
    assert role_arn.endswith(
        ":role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
        "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
    )
    for role in synth.resources("serving", "AWS::IAM::Role").values():
        principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        assert principal != {"Service": "application-autoscaling.amazonaws.com"}
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
                "TargetValue": config.target_invocations_per_instance,
                "ScaleInCooldown": config.scale_in_cooldown_seconds,
                "ScaleOutCooldown": config.scale_out_cooldown_seconds,
            },
        },
    )


def test_prod_endpoint_spans_two_instances_at_least(prod):
    target = only(prod.resources("serving", "AWS::ApplicationAutoScaling::ScalableTarget"))
    assert target["Properties"]["MinCapacity"] >= 2


# --- api ---------------------------------------------------------------------------------------------------


def endpoint_reference(synth, value: dict, attribute: str) -> bool:
    """True if value is the serving stack's output of the CfnEndpoint's own attribute (no hand-made ARN)."""
    serving = synth.templates["serving"]
    if "Fn::GetStackOutput" in value:
        reference = value["Fn::GetStackOutput"]
        assert reference["StackName"] == f"dogbreed-{synth.config.stage}-serving"
        output = serving["Outputs"][reference["OutputName"]]
    else:
        export = value["Fn::ImportValue"]
        output = next(o for o in serving["Outputs"].values() if o.get("Export", {}).get("Name") == export)
    endpoint_id = next(iter(synth.resources("serving", "AWS::SageMaker::Endpoint")))
    return output["Value"] == {"Fn::GetAtt": [endpoint_id, attribute]}


@pytest.mark.parametrize("stage", STAGES)
def test_lambda_can_only_invoke_its_endpoint(instance_stages, stage):
    synth = instance_stages[stage]
    policies = synth.resources("api", "AWS::IAM::ManagedPolicy")
    statements = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]
    sagemaker = [s for s in statements if any(a.startswith("sagemaker:") for a in as_list(s["Action"]))]
    assert len(sagemaker) == 1
    (invoke,) = sagemaker
    assert invoke["Action"] == "sagemaker:InvokeEndpoint"
    assert invoke["Effect"] == "Allow"
    assert endpoint_reference(synth, invoke["Resource"], "EndpointArn")
    assert synth.resources("api", "AWS::IAM::Policy") == {}  # no inline policy could widen it


@pytest.mark.parametrize("stage", STAGES)
def test_lambda_runtime_environment_and_timeouts(stages, stage):
    synth = stages[stage]
    config = synth.config
    function = only(synth.resources("api", "AWS::Lambda::Function"))["Properties"]
    assert function["Runtime"] in ("python3.12", "python3.13")
    assert function["Architectures"] == ["arm64"]
    assert function["Handler"] == "handler.handler"
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["ReservedConcurrentExecutions"] == config.lambda_reserved_concurrency
    assert function["MemorySize"] == config.lambda_memory_mb
    variables = function["Environment"]["Variables"]
    assert endpoint_reference(synth, variables["ENDPOINT_NAME"], "EndpointName")
    assert variables["ENDPOINT_READ_TIMEOUT_SECONDS"] == str(config.endpoint_read_timeout_seconds)
    assert variables["ENDPOINT_CONNECT_TIMEOUT_SECONDS"] == str(config.endpoint_connect_timeout_seconds)
    assert variables["ENDPOINT_MAX_ATTEMPTS"] == str(config.endpoint_max_attempts)
    assert variables["MAX_IMAGE_BYTES"] == str(config.max_image_bytes)
    worst = config.endpoint_max_attempts * (
        config.endpoint_connect_timeout_seconds + config.endpoint_read_timeout_seconds
    )
    assert function["Timeout"] == config.lambda_timeout_seconds > worst


@pytest.mark.parametrize("stage", STAGES)
def test_lambda_logs_to_its_own_encrypted_log_group_with_retention(stages, stage):
    synth = stages[stage]
    log_group_id, log_group = next(iter(synth.resources("api", "AWS::Logs::LogGroup").items()))
    assert log_group["Properties"]["RetentionInDays"] == synth.config.log_retention_days
    assert "KmsKeyId" in log_group["Properties"]
    function = only(synth.resources("api", "AWS::Lambda::Function"))["Properties"]
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": log_group_id}


@pytest.mark.parametrize("stage", STAGES)
def test_function_url_uses_iam_auth_on_the_live_alias(stages, stage):
    synth = stages[stage]
    alias = only(synth.resources("api", "AWS::Lambda::Alias"))
    assert alias["Properties"]["Name"] == "live"
    function_id = next(iter(synth.resources("api", "AWS::Lambda::Function")))
    url = only(synth.resources("api", "AWS::Lambda::Url"))["Properties"]
    assert url["AuthType"] == "AWS_IAM"
    assert url["TargetFunctionArn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert url["Qualifier"] == "live"
    assert (
        synth.resources("api", "AWS::Lambda::Permission") == {}
    )  # nobody gets invoke rights from this stack


@pytest.mark.parametrize("stage", STAGES)
def test_provisioned_concurrency_autoscales_between_the_derived_bounds(stages, stage):
    synth = stages[stage]
    config = synth.config
    alias = only(synth.resources("api", "AWS::Lambda::Alias"))["Properties"]
    # One owner: Application Auto Scaling. A value on the alias would be written back over the autoscaled
    # one on every code change (see test_lifecycle.py).
    assert "ProvisionedConcurrencyConfig" not in alias
    target = only(synth.resources("api", "AWS::ApplicationAutoScaling::ScalableTarget"))["Properties"]
    assert target["ScalableDimension"] == "lambda:function:ProvisionedConcurrency"
    assert target["MinCapacity"] == config.lambda_provisioned_concurrency
    assert target["MaxCapacity"] == config.lambda_provisioned_concurrency_max
    synth.template("api").has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "TargetTrackingScalingPolicyConfiguration": {
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "LambdaProvisionedConcurrencyUtilization"
                },
                "TargetValue": config.lambda_provisioned_utilization_target,
            }
        },
    )


def test_lambda_asset_is_the_handler_sources_only(dev):
    code = only(dev.resources("api", "AWS::Lambda::Function"))["Properties"]["Code"]
    asset_dir = dev.outdir / f"asset.{code['S3Key'].removesuffix('.zip')}"
    files = sorted(p.relative_to(asset_dir).as_posix() for p in asset_dir.rglob("*") if p.is_file())
    assert "handler.py" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc") or f.startswith("tests/")]
    assert all(f.endswith(".py") for f in files), files


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_prediction_function_logs_in_text_format_to_its_own_group(stages, stage):
    """The handler writes one JSON line per request itself, and Lambda passes a Python function's
    print/stdout output on as plain text in either format: the JSON format would wrap only the platform's
    lines, so the function keeps the text format (lambda/handler.py, _log)."""
    (function,) = [
        f["Properties"]
        for k, f in stages[stage].resources("api", "AWS::Lambda::Function").items()
        if k.startswith("PredictionFunction")
    ]
    logging = function["LoggingConfig"]
    assert logging.get("LogFormat", "Text") == "Text"
    assert "ApplicationLogLevel" not in logging and "SystemLogLevel" not in logging
    (group_id,) = stages[stage].resources("api", "AWS::Logs::LogGroup")
    assert logging["LogGroup"] == {"Ref": group_id}
