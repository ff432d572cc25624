"""The model lifecycle in the templates: the stage's package group, a Model built from a package, the
deploy-time approval check, approval notices, and what promoting another package changes (and leaves
alone)."""

from __future__ import annotations

import json

import pytest

from stacks.model_environment import model_environment, placeholder_package_arn

from .conftest import synth_stage

PROMOTED = "arn:aws:sagemaker:us-east-1:123456789012:model-package/dogbreed-prod/2"
DEV_PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/dogbreed-dev/5"


def only(resources: dict) -> tuple[str, dict]:
    assert len(resources) == 1, list(resources)
    return next(iter(resources.items()))


def statements(policy: dict) -> dict[str, dict]:
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def joined(value) -> str:
    """An ARN built with Fn::Join, pseudo parameters shown as <Ref>."""
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else f"<{p.get('Ref', json.dumps(p))}>" for p in parts)


@pytest.fixture(scope="module")
def promoted(tmp_path_factory):
    return synth_stage(
        tmp_path_factory.mktemp("promoted"), "prod", model_data_url=None, model_package_arn=PROMOTED
    )


@pytest.fixture(scope="module")
def dev_package(tmp_path_factory):
    return synth_stage(
        tmp_path_factory.mktemp("dev-package"), "dev", model_data_url=None, model_package_arn=DEV_PACKAGE
    )


# --- the group: one per stage, in the training stack ------------------------------------------------------


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_each_stage_declares_its_own_group_and_keeps_it(stages, stage):
    synth = stages[stage]
    _, group = only(synth.resources("training", "AWS::SageMaker::ModelPackageGroup"))
    assert group["Properties"]["ModelPackageGroupName"] == f"dogbreed-{stage}"
    # The versions are the record of what was trained and approved: kept on delete, not after a failed
    # first create (the retry would collide with the fixed name).
    assert group["DeletionPolicy"] == "RetainExceptOnCreate"
    outputs = synth.templates["training"]["Outputs"]
    assert outputs["ModelPackageGroupName"]["Value"] == f"dogbreed-{stage}"


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_training_role_may_register_into_its_stage_group_only(stages, stage):
    synth = stages[stage]
    (policy,) = [
        p
        for p in synth.resources("training", "AWS::IAM::ManagedPolicy").values()
        if "RegisterModelVersions" in statements(p)
    ]
    register = statements(policy)["RegisterModelVersions"]
    assert register["Action"] == "sagemaker:CreateModelPackage"
    # Job code runs with this role: it may register a pending version, never approve its own model.
    assert register["Condition"] == {
        "StringEquals": {"sagemaker:ModelApprovalStatus": "PendingManualApproval"}
    }
    assert sorted(joined(r) for r in register["Resource"]) == [
        f"arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:model-package-group/dogbreed-{stage}",
        f"arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:model-package/dogbreed-{stage}/*",
    ]


# --- a Model built from the package ------------------------------------------------------------------------


def test_prod_builds_its_model_from_the_package_with_the_stacks_environment(prod):
    _, model = only(prod.resources("serving", "AWS::SageMaker::Model"))
    properties = model["Properties"]
    assert properties["PrimaryContainer"] == {
        "ModelPackageName": placeholder_package_arn("prod"),
        "Environment": model_environment(prod.config),
    }
    assert properties["EnableNetworkIsolation"] is True
    (check_id,) = prod.resources("serving", "Custom::ModelPackageCheck")
    # The Model is created only after the check passed (and the artifact grant it feeds exists).
    assert check_id in model["DependsOn"]


def test_the_model_role_describes_only_its_groups_versions(prod):
    policies = prod.resources("serving", "AWS::IAM::ManagedPolicy").values()
    describe = [
        statements(p)["DescribeStagePackages"] for p in policies if "DescribeStagePackages" in statements(p)
    ]
    assert len(describe) == 2  # the model role's and the check's
    for statement in describe:
        assert statement["Action"] == "sagemaker:DescribeModelPackage"
        assert joined(statement["Resource"]).endswith(":model-package/dogbreed-prod/*")


def test_a_production_deploy_requires_an_approved_package(prod):
    _, check = only(prod.resources("serving", "Custom::ModelPackageCheck"))
    assert check["Properties"]["ModelPackageArn"] == placeholder_package_arn("prod")
    assert check["Properties"]["RequireApproved"] == "true"


def test_a_non_production_stage_may_deploy_a_pending_package(dev_package):
    _, check = only(dev_package.resources("serving", "Custom::ModelPackageCheck"))
    properties = check["Properties"]
    assert (properties["ModelPackageArn"], properties["RequireApproved"]) == (DEV_PACKAGE, "false")
    # A check whose function never starts fails the deploy in minutes, not CloudFormation's hour.
    assert properties["ServiceTimeout"] == "300"
    _, model = only(dev_package.resources("serving", "AWS::SageMaker::Model"))
    assert model["Properties"]["PrimaryContainer"]["ModelPackageName"] == DEV_PACKAGE


def test_the_package_must_match_the_stages_bucket_image_and_instance_type(prod):
    """The package pinned them when it was registered; the check compares them with what the stage names
    now, so a package from another stage's bucket, or one the stage's image or instance type outgrew,
    fails the deploy with the reason instead of an endpoint that cannot start."""
    _, check = only(prod.resources("serving", "Custom::ModelPackageCheck"))
    properties = check["Properties"]
    assert joined(properties["ExpectedBucket"]) == "dogbreed-prod-<AWS::AccountId>-<AWS::Region>"
    image = properties["ExpectedImage"]["Fn::Join"][1]
    assert image[0] == {"Fn::FindInMap": ["DlcAccounts", {"Ref": "AWS::Region"}, "account"]}
    assert image[-1] == f"/pytorch-inference:{prod.config.inference_image_tag}"
    assert properties["InstanceType"] == prod.config.instance_type


def test_a_stage_serving_a_url_has_no_check(dev):
    assert dev.resources("serving", "Custom::ModelPackageCheck") == {}
    assert dev.resources("serving", "AWS::Lambda::Function") == {}


def test_the_check_function_may_only_describe_packages_and_write_its_logs(prod):
    resources = prod.templates["serving"]["Resources"]
    _, function = only(prod.resources("serving", "AWS::Lambda::Function"))
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    attached = [
        p
        for p in prod.resources("serving", "AWS::IAM::ManagedPolicy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    (policy,) = attached
    assert {sid: s["Action"] for sid, s in statements(policy).items()} == {
        "DescribeStagePackages": "sagemaker:DescribeModelPackage",
        "WriteOwnLogs": ["logs:CreateLogStream", "logs:PutLogEvents"],
    }
    role = resources[role_id]["Properties"]
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    assert function["Properties"]["Handler"] == "index.handler"
    # It answers CloudFormation itself; a retried invocation would answer twice.
    (invoke_config,) = prod.resources("serving", "AWS::Lambda::EventInvokeConfig").values()
    assert invoke_config["Properties"]["MaximumRetryAttempts"] == 0


def test_a_package_of_another_account_or_region_stops_the_deploy_before_it_creates_anything(prod):
    (assertion,) = prod.templates["serving"]["Rules"]["ModelPackageInThisAccountAndRegion"]["Assertions"]
    assert assertion["Assert"] == {
        "Fn::And": [
            {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]},
            {"Fn::Equals": [{"Ref": "AWS::AccountId"}, "123456789012"]},
        ]
    }


# --- notices ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_approvals_and_rejections_reach_the_alarm_topic(stages, stage):
    synth = stages[stage]
    _, rule = only(synth.resources("serving", "AWS::Events::Rule"))
    properties = rule["Properties"]
    assert properties["Name"] == f"dogbreed-{stage}-model-approvals"
    assert properties["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {
            "ModelPackageGroupName": [f"dogbreed-{stage}"],
            "ModelApprovalStatus": ["Approved", "Rejected"],
        },
    }
    (target,) = properties["Targets"]
    topic_id, _ = only(synth.resources("serving", "AWS::SNS::Topic"))
    assert target["Arn"] == {"Ref": topic_id}
    assert "<detail-ModelApprovalStatus>" in target["InputTransformer"]["InputTemplate"]
    # A notice that cannot be published is kept, and its queue is alarmed like the e-mail's.
    queue_id = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
    assert queue_id.startswith("ModelApprovals")
    alarmed = [
        a
        for a in synth.resources("serving", "AWS::CloudWatch::Alarm").values()
        if queue_id in json.dumps(a["Properties"].get("Dimensions", []))
    ]
    assert len(alarmed) == 1 and alarmed[0]["Properties"]["AlarmActions"]


def test_a_team_topic_hears_the_notices_too(tmp_path):
    team = "arn:aws:sns:us-east-1:123456789012:ops-alarms"
    synth = synth_stage(tmp_path, "prod", alarm_email="", alarm_topic_arn=team)
    _, rule = only(synth.resources("serving", "AWS::Events::Rule"))
    arns = [json.dumps(t["Arn"]) for t in rule["Properties"]["Targets"]]
    assert len(arns) == 2 and json.dumps(team) in arns
    (policy,) = [
        p
        for p in synth.resources("serving", "AWS::IAM::ManagedPolicy").values()
        if "PublishNotices" in statements(p)
    ]
    assert team in statements(policy)["PublishNotices"]["Resource"]


def test_eventbridge_publishes_with_a_role_and_uses_the_key_only_for_this_rule(prod):
    _, rule = only(prod.resources("serving", "AWS::Events::Rule"))
    (target,) = rule["Properties"]["Targets"]
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    (policy,) = [
        p
        for p in prod.resources("serving", "AWS::IAM::ManagedPolicy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    assert {sid: s["Action"] for sid, s in statements(policy).items()} == {
        "PublishNotices": "sns:Publish",
        "EncryptForTopic": ["kms:Decrypt", "kms:GenerateDataKey"],
    }
    key = next(iter(prod.resources("storage", "AWS::KMS::Key").values()))
    (events,) = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Principal") == {"Service": "events.amazonaws.com"}
    ]
    assert events["Sid"] == "ModelApprovalNotices"
    assert joined(events["Condition"]["ArnEquals"]["aws:SourceArn"]).endswith(
        ":rule/dogbreed-prod-model-approvals"
    )


# --- promotion: a one-line cdk.json change ----------------------------------------------------------------


def test_promotion_replaces_model_and_config_and_updates_the_same_endpoint(prod, promoted):
    model_before_id, _ = only(prod.resources("serving", "AWS::SageMaker::Model"))
    model_after_id, model_after = only(promoted.resources("serving", "AWS::SageMaker::Model"))
    # Same logical id, new ModelPackageName (a replacement: CloudFormation creates a new generated name).
    assert model_before_id == model_after_id
    assert model_after["Properties"]["PrimaryContainer"]["ModelPackageName"] == PROMOTED
    assert "ModelName" not in model_after["Properties"]
    _, config_after = only(promoted.resources("serving", "AWS::SageMaker::EndpointConfig"))
    assert config_after["Properties"]["ProductionVariants"][0]["ModelName"] == {
        "Fn::GetAtt": [model_after_id, "ModelName"]
    }
    (_, endpoint_before), (_, endpoint_after) = (
        only(prod.resources("serving", "AWS::SageMaker::Endpoint")),
        only(promoted.resources("serving", "AWS::SageMaker::Endpoint")),
    )
    assert endpoint_before == endpoint_after  # in place: blue/green with auto-rollback


def test_promotion_leaves_the_lambda_storage_and_training_alone(prod, promoted):
    for kind in ("api", "storage", "training"):
        assert promoted.templates[kind] == prod.templates[kind], kind


def test_promotion_creates_a_new_check_and_a_new_grant_so_a_rollback_runs_neither_again(prod, promoted):
    (before,) = prod.resources("serving", "Custom::ModelPackageCheck")
    (after,) = promoted.resources("serving", "Custom::ModelPackageCheck")
    # A new logical id: the new check runs as a Create; a rollback deletes it (answered without a call)
    # and never re-runs the old one; the old one's Delete in the cleanup phase is answered the same way.
    assert before != after

    def artifact_policy_id(synth) -> str:
        return next(
            logical_id
            for logical_id, p in synth.resources("serving", "AWS::IAM::ManagedPolicy").items()
            if "ReadModelArtifact" in statements(p)
        )

    assert artifact_policy_id(prod) != artifact_policy_id(promoted)
    changed = {
        logical_id
        for logical_id in set(prod.templates["serving"]["Resources"])
        | set(promoted.templates["serving"]["Resources"])
        if prod.templates["serving"]["Resources"].get(logical_id)
        != promoted.templates["serving"]["Resources"].get(logical_id)
    }
    # The EndpointConfig's text is the same: it is replaced at deploy time because the generated name of the
    # Model it references changes.
    model_id, _ = only(prod.resources("serving", "AWS::SageMaker::Model"))
    assert changed == {before, after, artifact_policy_id(prod), artifact_policy_id(promoted), model_id}
