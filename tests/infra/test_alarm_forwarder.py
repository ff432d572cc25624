"""The front door's alarms reach the stage's alarm topics: the us-east-1 alarm notifies the edge topic,
whose one subscriber is a function in the stage's region (a cross-region subscription) that republishes
each notification to the stage's topics.

The function (stacks/constructs/edge_alarm_forwarder/index.py) runs on a real SNS event with a real boto3
client under botocore's Stubber (each call checked against SNS's service model); the templates are the
synthesized prod stage's.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from stacks.config import OPT_IN_REGIONS
from stacks.constructs.edge_alarm_forwarder import index as forwarder

STAGE_TOPIC = "arn:aws:sns:eu-west-1:111122223333:dogbreed-prod-alarms"
TEAM_TOPIC = "arn:aws:sns:eu-west-1:111122223333:ops-pager"
EDGE_TOPIC = "arn:aws:sns:us-east-1:111122223333:dogbreed-prod-edge-alarms"
ALARM_MESSAGE = json.dumps({"AlarmName": "dogbreed-prod-front-door-blocked", "NewStateValue": "ALARM"})
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
SUBJECT = 'ALARM: "dogbreed-prod-front-door-blocked" in US East (N. Virginia)'


def sns_event(subject: str | None = SUBJECT, message: str = ALARM_MESSAGE) -> dict:
    """What SNS hands a subscribed Lambda function (one record per notification)."""
    notification = {"Type": "Notification", "TopicArn": EDGE_TOPIC, "Message": message}
    if subject is not None:
        notification["Subject"] = subject
    return {
        "Records": [
            {"EventSource": "aws:sns", "EventSubscriptionArn": f"{EDGE_TOPIC}:1", "Sns": notification}
        ]
    }


@pytest.fixture
def sns(monkeypatch):
    # Stubbed clients still sign their requests, so they need some (never used) keys.
    client = boto3.client("sns", region_name="eu-west-1", **KEYS)
    stubber = Stubber(client)
    monkeypatch.setattr(forwarder, "sns_client", lambda: client)
    monkeypatch.setattr(forwarder, "TOPIC_ARNS", [STAGE_TOPIC, TEAM_TOPIC])
    with stubber:
        yield stubber
    stubber.assert_no_pending_responses()


def test_a_notification_is_republished_to_every_stage_topic_unchanged(sns):
    for topic in (STAGE_TOPIC, TEAM_TOPIC):
        sns.add_response(
            "publish", {"MessageId": "m"}, {"TopicArn": topic, "Subject": SUBJECT, "Message": ALARM_MESSAGE}
        )
    assert forwarder.handler(sns_event(), None) == {"forwarded": 2}


def test_a_subject_sns_would_refuse_is_cleaned_and_a_missing_one_left_out(sns):
    long_subject = "ALARM:\n" + "x" * 200
    cleaned = ("ALARM: " + "x" * 200)[:100]  # one line of printable ASCII, at most 100 characters
    for topic in (STAGE_TOPIC, TEAM_TOPIC):
        sns.add_response(
            "publish", {"MessageId": "m"}, {"TopicArn": topic, "Subject": cleaned, "Message": ALARM_MESSAGE}
        )
    forwarder.handler(sns_event(subject=long_subject), None)
    for topic in (STAGE_TOPIC, TEAM_TOPIC):
        sns.add_response("publish", {"MessageId": "m"}, {"TopicArn": topic, "Message": ALARM_MESSAGE})
    forwarder.handler(sns_event(subject=None), None)


def test_a_failed_publish_raises_so_lambda_retries_and_then_keeps_the_event(sns):
    sns.add_client_error("publish", service_error_code="KMSAccessDenied", http_status_code=400)
    with pytest.raises(Exception, match="KMSAccessDenied"):
        forwarder.handler(sns_event(), None)


def test_an_event_without_a_notification_is_an_error_not_a_silent_success(sns):
    with pytest.raises(ValueError, match="no SNS record"):
        forwarder.handler({"Records": []}, None)


# --- the templates ------------------------------------------------------------------------------------------


def forwarder_resources(prod) -> dict[str, dict]:
    return {k: r for k, r in prod.templates["frontdoor"]["Resources"].items() if k.startswith("EdgeAlarms")}


def test_the_waf_alarm_notifies_the_edge_topic_and_nothing_else_in_us_east_1(prod):
    (topic_id,) = prod.resources("edge", "AWS::SNS::Topic")
    for alarm in prod.resources("edge", "AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == alarm["Properties"]["OKActions"] == [{"Ref": topic_id}]
    # No e-mail of its own: the forwarder is the one route, so nobody hears an alarm twice.
    assert prod.resources("edge", "AWS::SNS::Subscription") == {}
    assert prod.templates["edge"]["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": topic_id}


def test_the_forwarder_subscribes_across_regions_to_the_edge_topic_and_only_it_may_invoke_it(prod):
    edge_topic = {"Fn::GetStackOutput": {"StackName": "dogbreed-prod-edge", "Region": "us-east-1",
                                         "OutputName": "AlarmTopicArn"}}  # fmt: skip
    resources = forwarder_resources(prod)
    (subscription,) = [r for r in resources.values() if r["Type"] == "AWS::SNS::Subscription"]
    (function_id,) = [k for k, r in resources.items() if r["Type"] == "AWS::Lambda::Function"]
    assert subscription["Properties"] == {
        "Endpoint": {"Fn::GetAtt": [function_id, "Arn"]},
        "Protocol": "lambda",
        "Region": "us-east-1",
        "TopicArn": edge_topic,
    }
    (permission,) = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    assert permission["Properties"]["Principal"] == "sns.amazonaws.com"
    assert permission["Properties"]["SourceArn"] == edge_topic
    assert any(d.startswith("EdgeAlarmsInvokeFromTheEdgeTopic") for d in subscription["DependsOn"])


def test_the_forwarder_publishes_to_the_stage_alarm_topic_with_the_least_it_needs(prod):
    resources = forwarder_resources(prod)
    (function,) = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]
    (alarm,) = [r for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    (stage_topic,) = alarm["Properties"]["AlarmActions"]
    assert stage_topic["Fn::GetStackOutput"]["StackName"] == "dogbreed-prod-serving"
    assert function["Properties"]["Environment"]["Variables"]["TOPIC_ARNS"] == stage_topic
    (queue_id,) = [k for k, r in resources.items() if r["Type"] == "AWS::SQS::Queue"]
    assert function["Properties"]["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    (policy,) = [r for r in resources.values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert statements["PublishToTheStageAlarmTopics"]["Action"] == "sns:Publish"
    assert statements["PublishToTheStageAlarmTopics"]["Resource"] == stage_topic
    assert statements["KeepUndeliveredNotifications"]["Resource"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert set(statements) == {
        "PublishToTheStageAlarmTopics",
        "EncryptForTheTopicAndQueue",
        "KeepUndeliveredNotifications",
        "WriteOwnLogs",
    }


def test_a_front_door_deploy_stops_in_an_opt_in_region(prod):
    (assertion,) = prod.templates["frontdoor"]["Rules"]["FrontDoorInADefaultRegion"]["Assertions"]
    assert assertion["Assert"] == {
        "Fn::Not": [{"Fn::Contains": [list(OPT_IN_REGIONS), {"Ref": "AWS::Region"}]}]
    }
    assert {"eu-south-1", "af-south-1", "me-south-1"} <= set(OPT_IN_REGIONS)
    assert not {"us-east-1", "eu-west-1", "ap-northeast-1"} & set(OPT_IN_REGIONS)
