"""Retraining updates the same endpoint; the optional variants (serverless, KMS-capable instance) synthesize.

A new artifact by URL (an experiment, dev here); promoting a new package is in test_model_registry.py.

Each variant is synthesized with the security gate on, so building it at all proves zero unacknowledged
cdk-nag findings for that configuration too.
"""

from __future__ import annotations

import pytest

from .conftest import synth_stage

RETRAINED_URL = "s3://dogbreed-dev-artifacts/training-output/job-2/output/model.tar.gz"


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    return synth_stage(
        tmp_path_factory.mktemp("retrained"), "dev", model_data_url=RETRAINED_URL, serving_mode="instance"
    )


def only(resources: dict) -> tuple[str, dict]:
    assert len(resources) == 1, list(resources)
    return next(iter(resources.items()))


def test_new_model_url_updates_the_same_endpoint_in_place(dev_instance, retrained):
    _, endpoint_before = only(dev_instance.resources("serving", "AWS::SageMaker::Endpoint"))
    _, endpoint_after = only(retrained.resources("serving", "AWS::SageMaker::Endpoint"))
    # Same name, so CloudFormation updates the endpoint (blue/green) rather than replacing it.
    assert (
        endpoint_before["Properties"]["EndpointName"]
        == endpoint_after["Properties"]["EndpointName"]
        == "dogbreed-dev"
    )
    assert (
        endpoint_before == endpoint_after
    )  # it points at the config by GetAtt: only the config's name changes


def test_new_model_url_replaces_model_and_endpoint_config(dev_instance, retrained):
    model_id, model_before = only(dev_instance.resources("serving", "AWS::SageMaker::Model"))
    _, model_after = only(retrained.resources("serving", "AWS::SageMaker::Model"))
    before = model_before["Properties"]["PrimaryContainer"]["ModelDataUrl"]
    after = model_after["Properties"]["PrimaryContainer"]["ModelDataUrl"]
    assert (before, after) == ("s3://example-bucket/model/model.tar.gz", RETRAINED_URL)
    # No fixed names: the ModelDataUrl change (replacement) creates a new model under a new generated name,
    # whose new name in turn replaces the endpoint config that references it.
    assert "ModelName" not in model_after["Properties"]
    _, config_after = only(retrained.resources("serving", "AWS::SageMaker::EndpointConfig"))
    assert "EndpointConfigName" not in config_after["Properties"]
    assert config_after["Properties"]["ProductionVariants"][0]["ModelName"] == {
        "Fn::GetAtt": [model_id, "ModelName"]
    }


def test_new_model_url_changes_only_the_model_artifact_grant(dev_instance, retrained):
    assert (
        retrained.templates["api"] == dev_instance.templates["api"]
    )  # Lambda config and invoke policy unchanged
    assert retrained.templates["storage"] == dev_instance.templates["storage"]
    assert retrained.templates["training"] == dev_instance.templates["training"]
    policy_before = str(dev_instance.templates["serving"]["Resources"])
    policy_after = str(retrained.templates["serving"]["Resources"])
    assert "dogbreed-dev-artifacts/training-output/job-2/output/model.tar.gz" in policy_after
    assert "example-bucket/model/model.tar.gz" in policy_before
    assert "example-bucket" not in policy_after


def _artifact_policy(synth) -> tuple[str, dict]:
    policies = synth.resources("serving", "AWS::IAM::ManagedPolicy")
    return only(
        {
            logical_id: policy
            for logical_id, policy in policies.items()
            if any(
                s.get("Sid") == "ReadModelArtifact"
                for s in policy["Properties"]["PolicyDocument"]["Statement"]
            )
        }
    )


def test_new_model_url_adds_a_new_artifact_grant_instead_of_editing_the_old_one(dev_instance, retrained):
    # A new logical id: CloudFormation creates the new grant and deletes the old one only in the cleanup
    # phase, so a rollback of a failed blue/green update (back to the old model, on fresh instances that
    # download the old artifact) still finds the old artifact readable.
    before_id, before = _artifact_policy(dev_instance)
    after_id, _ = _artifact_policy(retrained)
    assert before_id != after_id
    (statement,) = before["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "s3:GetObject"
    # The other model policy (image, logs, key) keeps its logical id and is untouched.
    others_before = set(dev_instance.resources("serving", "AWS::IAM::ManagedPolicy")) - {before_id}
    others_after = set(retrained.resources("serving", "AWS::IAM::ManagedPolicy")) - {after_id}
    assert others_before == others_after
    # The model is created only once its artifact grant exists.
    _, model = only(retrained.resources("serving", "AWS::SageMaker::Model"))
    assert after_id in model["DependsOn"]


@pytest.fixture(scope="module")
def long_baking(tmp_path_factory):
    return synth_stage(tmp_path_factory.mktemp("long-baking"), "prod", baking_period_seconds=3600)


def test_longest_allowed_baking_period_still_fits_the_deployment_timeout(long_baking):
    # baking_period_seconds accepts up to 3600 s; with a canary that is two bakes plus the termination
    # wait, which a fixed one-hour MaximumExecutionTimeoutInSeconds would not exceed (UpdateEndpoint fails).
    _, endpoint = only(long_baking.resources("serving", "AWS::SageMaker::Endpoint"))
    policy = endpoint["Properties"]["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    routing = policy["TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY"
    waits = 2 * routing["WaitIntervalInSeconds"] + policy["TerminationWaitInSeconds"]
    assert waits < policy["MaximumExecutionTimeoutInSeconds"] <= 14400


@pytest.fixture(scope="module")
def serverless(tmp_path_factory):
    return synth_stage(
        tmp_path_factory.mktemp("serverless"),
        "dev",
        serving_mode="serverless",
        inference_image_tag="2.6.0-cpu-py312",
        serverless_memory_mb=4096,
        serverless_max_concurrency=3,
        lambda_provisioned_concurrency=0,
        lambda_provisioned_concurrency_max=0,
    )


def test_serverless_dev_variant(serverless):
    _, endpoint_config = only(serverless.resources("serving", "AWS::SageMaker::EndpointConfig"))
    (variant,) = endpoint_config["Properties"]["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 4096, "MaxConcurrency": 3}
    assert "InstanceType" not in variant
    assert "KmsKeyId" not in endpoint_config["Properties"]
    # No instance count to keep: the endpoint takes the new config's variant as is.
    _, endpoint = only(serverless.resources("serving", "AWS::SageMaker::Endpoint"))
    assert "RetainAllVariantProperties" not in endpoint["Properties"]
    _, model = only(serverless.resources("serving", "AWS::SageMaker::Model"))
    # Serverless Inference does not support network isolation.
    assert model["Properties"]["EnableNetworkIsolation"] is False
    assert (
        model["Properties"]["PrimaryContainer"]["Image"]["Fn::Join"][1][-1]
        == "/pytorch-inference:2.6.0-cpu-py312"
    )
    # No Application Auto Scaling for serverless: concurrency is the scaling knob.
    assert serverless.resources("serving", "AWS::ApplicationAutoScaling::ScalableTarget") == {}
    _, endpoint = only(serverless.resources("serving", "AWS::SageMaker::Endpoint"))
    assert endpoint["Properties"]["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]


def test_zero_provisioned_concurrency_leaves_the_alias_on_demand(serverless):
    _, alias = only(serverless.resources("api", "AWS::Lambda::Alias"))
    assert "ProvisionedConcurrencyConfig" not in alias["Properties"]
    assert serverless.resources("api", "AWS::ApplicationAutoScaling::ScalableTarget") == {}


@pytest.fixture(scope="module")
def kms_volume(tmp_path_factory):
    return synth_stage(
        tmp_path_factory.mktemp("kms-volume"),
        "dev",
        instance_type="ml.m5.xlarge",
        inference_image_tag="2.6.0-cpu-py312",
    )


def test_instance_without_local_storage_gets_the_kms_volume_key(kms_volume):
    _, endpoint_config = only(kms_volume.resources("serving", "AWS::SageMaker::EndpointConfig"))
    assert endpoint_config["Properties"]["ProductionVariants"][0]["InstanceType"] == "ml.m5.xlarge"
    key = endpoint_config["Properties"]["KmsKeyId"]
    assert "Fn::GetStackOutput" in key or "Fn::ImportValue" in key


def test_training_host_is_a_spot_dlami_instance_with_imdsv2_and_encrypted_volume(training_host):
    template = training_host.templates["training"]
    _, instance = only(training_host.resources("training", "AWS::EC2::Instance"))
    properties = instance["Properties"]
    # Pinned in cdk.json: an SSM parameter resolved at deploy would replace the host at each DLAMI release.
    assert properties["ImageId"] == training_host.config.training_host_ami_id
    (volume,) = properties["BlockDeviceMappings"]
    assert volume["Ebs"]["Encrypted"] is True
    assert "KmsKeyId" in volume["Ebs"]
    assert "KeyName" not in properties  # no SSH key: Session Manager only
    template_id = properties["LaunchTemplate"]["LaunchTemplateId"]["Ref"]
    launch_data = template["Resources"][template_id]["Properties"]["LaunchTemplateData"]
    assert launch_data["MetadataOptions"] == {"HttpTokens": "required"}
    assert launch_data["InstanceMarketOptions"]["MarketType"] == "spot"
    # One-time, terminate on interruption: a persistent request reopens when CloudFormation terminates the
    # instance (stack deletion, replacement) and keeps launching GPU instances outside the stack.
    spot = launch_data["InstanceMarketOptions"]["SpotOptions"]
    assert spot["SpotInstanceType"] == "one-time"
    assert spot["InstanceInterruptionBehavior"] == "terminate"


def test_training_host_has_no_inbound_access_and_no_internet_route(training_host):
    groups = training_host.resources("training", "AWS::EC2::SecurityGroup")
    host_group = next(g for g in groups.values() if "no inbound" in g["Properties"]["GroupDescription"])
    assert "SecurityGroupIngress" not in host_group["Properties"]
    assert training_host.resources("training", "AWS::EC2::InternetGateway") == {}
    assert training_host.resources("training", "AWS::EC2::NatGateway") == {}
    endpoints = training_host.resources("training", "AWS::EC2::VPCEndpoint")
    assert len(endpoints) == 4  # S3 gateway + ssm, ssmmessages, ec2messages
    assert training_host.resources("training", "AWS::EC2::FlowLog")


def test_training_host_profile_is_scoped_to_the_bucket_prefixes(training_host):
    policies = training_host.resources("training", "AWS::IAM::ManagedPolicy")
    host_policy = next(p for k, p in policies.items() if k.startswith("GpuTrainingHostPolicy"))
    statements = {s["Sid"]: s for s in host_policy["Properties"]["PolicyDocument"]["Statement"]}
    assert statements["ReadTrainingInputs"]["Action"] == "s3:GetObject"
    suffixes = sorted(r["Fn::Join"][1][-1] for r in statements["ReadTrainingInputs"]["Resource"])
    assert suffixes == ["/checkpoints/*", "/code/*", "/data/*", "/weights/*"]
    assert statements["SessionManager"]["Resource"] == "*"
    assert all(
        a.split(":")[0] in ("ssm", "ssmmessages", "ec2messages")
        for a in statements["SessionManager"]["Action"]
    )
    for role in training_host.resources("training", "AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]
    assert training_host.resources("training", "AWS::IAM::Policy") == {}
    assert "TrainingHostId" in training_host.templates["training"]["Outputs"]


def test_equal_provisioned_bounds_give_fixed_provisioned_concurrency_without_autoscaling(tmp_path):
    fixed = synth_stage(
        tmp_path, "dev", lambda_provisioned_concurrency=1, lambda_provisioned_concurrency_max=1
    )
    _, alias = only(fixed.resources("api", "AWS::Lambda::Alias"))
    assert alias["Properties"]["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 1}
    assert fixed.resources("api", "AWS::ApplicationAutoScaling::ScalableTarget") == {}


def test_autoscaling_can_be_switched_off_for_an_instance_type_change(tmp_path):
    """SageMaker rejects UpdateEndpoint to another instance type while the variant is a scalable target:
    one deploy without the target deregisters it, and the endpoint itself stays as it was."""
    unscaled = synth_stage(tmp_path, "dev", serving_mode="instance", autoscaling_enabled=False)
    targets = unscaled.resources("serving", "AWS::ApplicationAutoScaling::ScalableTarget")
    assert targets == {}
    _, endpoint = only(unscaled.resources("serving", "AWS::SageMaker::Endpoint"))
    assert endpoint["Properties"]["EndpointName"] == "dogbreed-dev"
    assert endpoint["Properties"]["RetainAllVariantProperties"] is True  # the running count is kept
