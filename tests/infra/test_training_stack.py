"""The training stack's least privilege and what deploying it must not break.

The optional EC2 host's spot launch, its pinned AMI and flow-log role; the weights prefix a network-isolated
job reads; the shared training log group, which no job may create; the grant behind the training volume key.
"""

from __future__ import annotations

import pytest

from stacks.config import DLAMI_PARAMETER, ConfigError, load_stage_config

from .conftest import PINNED_AMI, stage_context

SPOT_ROLE_SUFFIX = ":role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"


@pytest.fixture(scope="module")
def host(training_host):
    return training_host


def only(resources: dict) -> dict:
    assert len(resources) == 1, list(resources)
    return next(iter(resources.values()))


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def key_statements(synth) -> dict[str, dict]:
    key = only(synth.resources("storage", "AWS::KMS::Key"))
    return {s.get("Sid", repr(s["Action"])): s for s in key["Properties"]["KeyPolicy"]["Statement"]}


def policy_statements(synth, logical_id_prefix: str) -> dict[str, dict]:
    policies = synth.resources("training", "AWS::IAM::ManagedPolicy")
    (policy,) = [p for k, p in policies.items() if k.startswith(logical_id_prefix)]
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def joined_tail(value: dict) -> str:
    return value["Fn::Join"][1][-1]


# --- EC2 host: spot launch with the project key -------------------------------------------------------------


def test_the_spot_service_role_may_use_the_project_key_where_a_host_is_enabled(host, dev, prod):
    statements = key_statements(host)
    use, grants = statements["SpotInstanceVolumes"], statements["SpotInstanceVolumeGrants"]
    assert sorted(use["Action"]) == sorted(
        ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    )
    assert grants["Action"] == "kms:CreateGrant"
    assert grants["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}
    for statement in (use, grants):
        # Matched by ARN, not named as principal: KMS rejects a policy whose principal does not exist yet,
        # and EC2 creates the service-linked role only at the account's first spot launch.
        assert statement["Principal"] == {"AWS": "*"}
        role = statement["Condition"]["ArnEquals"]["aws:PrincipalArn"]
        assert joined_tail(role) == SPOT_ROLE_SUFFIX
    for without_host in (dev, prod):
        assert not [sid for sid in key_statements(without_host) if sid.startswith("SpotInstance")]


# --- EC2 host: pinned AMI -----------------------------------------------------------------------------------


def test_the_host_ami_is_the_pinned_id_not_a_parameter_resolved_at_deploy(host):
    instance = only(host.resources("training", "AWS::EC2::Instance"))
    assert instance["Properties"]["ImageId"] == PINNED_AMI
    parameters = host.templates["training"].get("Parameters", {})
    assert not [p for p in parameters.values() if "EC2::Image::Id" in p["Type"]]


def test_enabling_the_host_without_a_pinned_ami_names_the_key_and_the_lookup_command():
    context = stage_context("dev", training_host_enabled=True)
    with pytest.raises(ConfigError) as caught:
        load_stage_config(context.get)
    message = str(caught.value)
    assert message.startswith("dogbreed:stages.dev.training_host_ami_id: required when training_host_enabled")
    assert f"aws ssm get-parameter --name {DLAMI_PARAMETER}" in message
    assert "\n" not in message


# --- EC2 host: flow logs ------------------------------------------------------------------------------------


def test_only_this_accounts_flow_logs_may_assume_the_flow_logs_role(host):
    roles = host.resources("training", "AWS::IAM::Role")
    (statement,) = [
        s
        for role in roles.values()
        for s in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        if s["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    ]
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source_arn = statement["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Join"][1]
    assert source_arn[-1] == ":vpc-flow-log/*"
    assert {"Ref": "AWS::AccountId"} in source_arn and ":ec2:" in source_arn


# --- weights prefix -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_training_jobs_read_the_weights_prefix_that_the_stack_outputs(stages, stage):
    synth = stages[stage]
    statements = policy_statements(synth, "SageMakerTrainingPolicy")
    assert "/weights/*" in [joined_tail(r) for r in statements["ReadTrainingInputs"]["Resource"]]
    assert "weights/*" in statements["ListProjectPrefixes"]["Condition"]["StringLike"]["s3:prefix"]
    assert synth.templates["training"]["Outputs"]["WeightsPrefix"]["Value"] == "weights/"


def test_the_host_reads_the_weights_prefix_too(host):
    statements = policy_statements(host, "GpuTrainingHostPolicy")
    assert "/weights/*" in [joined_tail(r) for r in statements["ReadTrainingInputs"]["Resource"]]


# --- training log group -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_no_training_role_may_create_log_groups(stages, stage):
    for policy in stages[stage].resources("training", "AWS::IAM::ManagedPolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert "logs:CreateLogGroup" not in as_list(statement["Action"])


def test_only_the_production_stage_declares_the_shared_training_log_group(dev, prod):
    assert (dev.config.training_log_group_owner, prod.config.training_log_group_owner) == (False, True)
    assert dev.resources("training", "AWS::Logs::LogGroup") == {}
    group = only(prod.resources("training", "AWS::Logs::LogGroup"))
    assert group["Properties"]["LogGroupName"] == TRAINING_LOG_GROUP
    assert group["Properties"]["RetentionInDays"] == prod.config.log_retention_days
    assert "KmsKeyId" in group["Properties"]
    # Other stages' jobs keep writing to it: never deleted with this stack; and importable into it
    # (CloudFormation adopts only resources with DeletionPolicy Retain or RetainExceptOnCreate).
    assert (group["DeletionPolicy"], group["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")


# --- training volume key ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_training_role_may_grant_the_key_to_its_training_volume_only(stages, stage):
    statements = policy_statements(stages[stage], "SageMakerTrainingPolicy")
    grant = statements["GrantProjectKeyToTrainingVolumes"]
    assert grant["Action"] == "kms:CreateGrant"
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert grant["Resource"] == statements["UseProjectKey"]["Resource"]
