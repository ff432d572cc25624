"""What CloudFormation does with these templates on a real account's first day, and every day after.

Each test holds one finding of the pre-deploy review (docs/infrastructure.md, "Lifecycle"): a first deploy
that rolls back can be retried, alarms reach someone, provisioned concurrency has one owner, callers cannot
roll back a model, a Lambda-only change leaves the GPU fleet alone, and no service principal may use the
project key for another account.
"""

from __future__ import annotations

import json

import pytest

from stacks.config import ConfigError, load_stage_config

from .conftest import stage_context, synth_stage

STAGES = ["dev", "prod"]
# Properties that give a resource a name of our choosing: a second resource under that name cannot be
# created while the first still exists.
NAME_PROPERTIES = ("BucketName", "LogGroupName", "TopicName", "EndpointName", "DashboardName", "AliasName")
# A team's existing topic (an AWS Chatbot channel, a pager integration) that alarms may also notify.
TEAM_TOPIC = "arn:aws:sns:eu-west-1:111122223333:ops-pager"


def only(resources: dict) -> dict:
    assert len(resources) == 1, list(resources)
    return next(iter(resources.values()))


def all_resources(synth) -> dict[str, dict]:
    return {
        f"{kind}/{logical_id}": resource
        for kind, template in synth.templates.items()
        for logical_id, resource in template["Resources"].items()
    }


def key_statements(synth) -> list[dict]:
    key = only(synth.resources("storage", "AWS::KMS::Key"))
    return key["Properties"]["KeyPolicy"]["Statement"]


# --- 1. a failed first deploy can be retried --------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_nothing_outlives_a_failed_first_create(stages, stage):
    """Retain keeps a resource when the stack's own first create rolls back (a GPU quota, a slow container
    start), and the retry then fails on its fixed name with "already exists". RetainExceptOnCreate keeps it
    on deletion and replacement only."""
    resources = all_resources(stages[stage])
    retained = {name: r["Type"] for name, r in resources.items() if r.get("DeletionPolicy") == "Retain"}
    assert retained == {}
    named = {
        name: r.get("DeletionPolicy", "Delete")
        for name, r in resources.items()
        if set(NAME_PROPERTIES) & set(r.get("Properties", {}))
    }
    assert named, "the stage has fixed-name resources (bucket, endpoint log group, endpoint, topic)"
    assert set(named.values()) <= {"Delete", "RetainExceptOnCreate"}


@pytest.mark.parametrize("stage", STAGES)
def test_data_is_still_kept_when_a_stack_is_deleted(stages, stage):
    synth = stages[stage]
    for kind, resource_type in (("storage", "AWS::KMS::Key"), ("storage", "AWS::S3::Bucket")):
        for resource in synth.resources(kind, resource_type).values():
            assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == (
                "RetainExceptOnCreate",
                "Retain",
            )
    production_logs = {
        r["DeletionPolicy"]
        for kind in ("serving", "api")
        for r in synth.resources(kind, "AWS::Logs::LogGroup").values()
    }
    assert production_logs == {"RetainExceptOnCreate" if synth.config.production else "Delete"}


# --- 2. alarms reach someone ------------------------------------------------------------------------------


def test_a_production_stage_without_an_alarm_destination_stops_the_synth():
    context = stage_context("prod", alarm_email="")
    with pytest.raises(ConfigError) as caught:
        load_stage_config(context.get)
    message = str(caught.value)
    assert message.startswith("dogbreed:stages.prod.alarm_email: a production stage must send its alarms")
    assert "\n" not in message


def test_an_existing_topic_is_a_production_alarm_destination():
    config = load_stage_config(stage_context("prod", alarm_email="", alarm_topic_arn=TEAM_TOPIC).get)
    assert config.alarm_topic_arn == TEAM_TOPIC


def test_a_development_stage_may_alarm_to_its_topic_only():
    assert load_stage_config(stage_context("dev", alarm_email="").get).alarm_email == ""


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("arn:aws:sns:eu-west-1:111122223333:ops.fifo", "FIFO: alarm actions cannot publish to it"),
        ("arn:aws:sqs:eu-west-1:111122223333:ops", "not a topic"),
        ("ops-pager", "a name, not an ARN"),
    ],
)
def test_alarm_topic_arn_must_be_a_standard_topic(value, problem):
    with pytest.raises(
        ConfigError, match=r"^dogbreed:stages\.dev\.alarm_topic_arn: must look like arn:aws:sns:"
    ):
        load_stage_config(stage_context("dev", alarm_topic_arn=value).get)


def test_the_command_line_sets_the_destination_and_is_named_in_its_errors():
    context = stage_context("prod", alarm_email="")
    context["alarm_email"] = "not-an-address"
    with pytest.raises(ConfigError, match=r"^-c alarm_email: must look like ops@example.com"):
        load_stage_config(context.get)
    context["alarm_email"] = "oncall@example.org"
    assert load_stage_config(context.get).alarm_email == "oncall@example.org"


@pytest.mark.parametrize("stage", STAGES)
def test_the_alarm_email_keeps_what_it_could_not_deliver(stages, stage):
    """The Serverless pack requires a redrive policy on every subscription; the dead-letter queue is
    encrypted with the project key, which SNS may use for this stage's alarm topic only."""
    synth = stages[stage]
    subscription = only(synth.resources("serving", "AWS::SNS::Subscription"))["Properties"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", synth.config.alarm_email)
    queue_id = subscription["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert subscription["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    queue = synth.resources("serving", "AWS::SQS::Queue")[queue_id]["Properties"]
    assert "Fn::GetStackOutput" in queue["KmsMasterKeyId"]
    topic = only(synth.resources("serving", "AWS::SNS::Topic"))["Properties"]
    assert topic["TopicName"] == f"dogbreed-{stage}-alarms"
    (sns_statement,) = [
        s for s in key_statements(synth) if s["Principal"] == {"Service": "sns.amazonaws.com"}
    ]
    source_arn = json.dumps(sns_statement["Condition"]["ArnEquals"]["aws:SourceArn"])
    assert source_arn.endswith(f':dogbreed-{stage}-alarms"]]}}')
    # A notification that could not be delivered is itself an alarm, on the topic's other routes.
    undelivered = [
        a["Properties"]
        for a in synth.resources("serving", "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
        and queue_id in json.dumps(a["Properties"]["Dimensions"])
    ]
    assert len(undelivered) == 1 and undelivered[0]["AlarmActions"]


def test_without_an_alarm_email_there_is_no_subscription_or_queue_but_the_key_grant_stays(dev, tmp_path):
    """-c alarm_email may come with the serving stack's deploy alone: the storage stack's key must already
    let SNS write the queue, so the grant does not depend on the address."""
    synth = synth_stage(tmp_path, "dev", alarm_email="")
    assert synth.resources("serving", "AWS::SNS::Subscription") == {}
    # Only the approval notices' own dead-letter queue, which does not depend on an address.
    assert [
        q for q in synth.resources("serving", "AWS::SQS::Queue") if not q.startswith("ModelApprovals")
    ] == []
    assert synth.templates["storage"] == dev.templates["storage"]


def test_an_existing_topic_hears_every_alarm_of_the_stage(tmp_path):
    synth = synth_stage(tmp_path, "prod", alarm_email="", alarm_topic_arn=TEAM_TOPIC)
    alarms = [
        alarm["Properties"]
        # The front door's forwarder republishes the us-east-1 alarms to both (test_alarm_forwarder.py).
        for kind in ("serving", "api", "frontdoor")
        for alarm in synth.resources(kind, "AWS::CloudWatch::Alarm").values()
    ]
    assert len(alarms) >= 7
    for alarm in alarms:
        assert TEAM_TOPIC in alarm["AlarmActions"] and len(alarm["AlarmActions"]) == 2
        assert alarm["OKActions"] == alarm["AlarmActions"]
    # Alarms act only on topics of their own region: a deploy elsewhere stops before it creates anything.
    for kind in ("serving", "api", "frontdoor"):
        (assertion,) = synth.templates[kind]["Rules"]["TeamAlarmTopicInThisRegion"]["Assertions"]
        assert assertion["Assert"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "eu-west-1"]}
        assert "deploy this stage to eu-west-1" in assertion["AssertDescription"]


# --- 3. provisioned concurrency has one owner -------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_autoscaled_provisioned_concurrency_is_set_by_application_auto_scaling_alone(stages, stage):
    synth = stages[stage]
    alias = only(synth.resources("api", "AWS::Lambda::Alias"))["Properties"]
    target = only(synth.resources("api", "AWS::ApplicationAutoScaling::ScalableTarget"))["Properties"]
    assert target["ResourceId"]["Fn::Join"][1][-1].endswith(":live")
    assert "ProvisionedConcurrencyConfig" not in alias
    assert target["MinCapacity"] == synth.config.lambda_provisioned_concurrency


# --- 4. callers cannot roll a model back ------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_the_4xx_rate_notifies_but_never_rolls_back(stages, stage):
    synth = stages[stage]
    alarms = synth.resources("serving", "AWS::CloudWatch::Alarm")
    (rate_id,) = [
        logical_id
        for logical_id, alarm in alarms.items()
        if any(
            "errors / invocations" in m.get("Expression", "") for m in alarm["Properties"].get("Metrics", [])
        )
    ]
    # The endpoint rolls a blue/green update back; in inference_component mode the component its rolling one.
    kind = (
        "AWS::SageMaker::InferenceComponent"
        if synth.config.is_inference_component
        else "AWS::SageMaker::Endpoint"
    )
    deployed = only(synth.resources("serving", kind))["Properties"]
    rollback = {
        a["AlarmName"]["Ref"] for a in deployed["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    }
    assert rollback
    assert rate_id not in rollback
    assert alarms[rate_id]["Properties"]["AlarmActions"]


# --- 5. a Lambda-only change leaves the GPU fleet alone ---------------------------------------------------

LAMBDA_ONLY_CHANGES = {
    "lambda_memory_mb": 1024,
    "lambda_reserved_concurrency": 30,
    "lambda_provisioned_concurrency": 2,
    "lambda_provisioned_concurrency_max": 4,
    "lambda_provisioned_utilization_target": 0.5,
    "endpoint_connect_timeout_seconds": 3,
    "endpoint_read_timeout_seconds": 30,
    "endpoint_max_attempts": 3,
    "max_image_bytes": 2_000_000,
}


def test_lambda_only_settings_do_not_touch_the_model_or_the_endpoint(dev, tmp_path):
    """The Model's environment once derived TorchServe's timeout from the Lambda's read timeout: a
    Lambda-only change replaced the Model, hence the EndpointConfig, and started a GPU blue/green."""
    changed = synth_stage(tmp_path, "dev", **LAMBDA_ONLY_CHANGES)
    assert changed.templates["api"] != dev.templates["api"]
    for kind in ("storage", "training", "serving"):
        assert changed.templates[kind] == dev.templates[kind], kind


def test_the_read_timeout_must_leave_the_model_server_time_to_answer_first():
    context = stage_context("dev", endpoint_read_timeout_seconds=19, model_server_timeout_seconds=18)
    with pytest.raises(ConfigError) as caught:
        load_stage_config(context.get)
    assert str(caught.value) == (
        "dogbreed:stages.dev.endpoint_read_timeout_seconds: must be >= model_server_timeout_seconds + 2 "
        "(20), so the model server gives up before the caller (got 19)"
    )


# --- 9. the project key serves this account only ----------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_every_service_principal_on_the_key_is_held_to_this_account(stages, stage):
    """The key encrypts training data too: a service principal without a source condition could be
    asked to use it on behalf of another account's resources (the confused deputy)."""
    services = [s for s in key_statements(stages[stage]) if "Service" in s.get("Principal", {})]
    assert len(services) >= 2  # the regional logs service and CloudWatch alarms
    for statement in services:
        conditions = json.dumps(statement.get("Condition", {}))
        assert "aws:SourceAccount" in conditions or "kms:EncryptionContext:aws:logs:arn" in conditions, (
            statement
        )
    (cloudwatch,) = [s for s in services if s["Principal"]["Service"] == "cloudwatch.amazonaws.com"]
    assert cloudwatch["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert ":alarm:*" in json.dumps(cloudwatch["Condition"]["ArnLike"]["aws:SourceArn"])


# --- scale limits: a new maximum is an in-place update of the scalable target alone -----------------------


def test_a_new_maximum_changes_only_the_scalable_target(dev_instance, tmp_path):
    dev = dev_instance
    changed = synth_stage(
        tmp_path, "dev", serving_mode="instance", max_instances=dev.config.max_instances + 2
    )

    def without_target(synth) -> dict:
        return {
            logical_id: resource
            for logical_id, resource in synth.templates["serving"]["Resources"].items()
            if resource["Type"] != "AWS::ApplicationAutoScaling::ScalableTarget"
        }

    assert without_target(changed) == without_target(dev)
    target = only(changed.resources("serving", "AWS::ApplicationAutoScaling::ScalableTarget"))["Properties"]
    assert target["MaxCapacity"] == dev.config.max_instances + 2
    for kind in ("storage", "training", "api"):
        assert changed.templates[kind] == dev.templates[kind], kind
