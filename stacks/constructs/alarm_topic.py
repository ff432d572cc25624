"""The stage's alarm topic and where the stage's alarms notify (``alarm_destinations``), and the recipe
every alarm topic of the project shares (the edge stack's us-east-1 topic uses it too)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, CfnRule, CfnRuleAssertion, Fn, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from stacks.constructs.alarms import dead_letter_queue, notify_on_change, undelivered_alarm


def encrypted_topic(
    scope: Construct, construct_id: str, *, topic_name: str, display_name: str, key: kms.IKey
) -> sns.Topic:
    """An alarm topic: ``key`` (whose policy must let CloudWatch alarms use it), TLS only.

    A fixed name (the stage topic's lets the stage key's policy name the one topic whose dead-letter
    queue may use the key); not retained, so a failed create leaves nothing behind.
    """
    return sns.Topic(
        scope,
        construct_id,
        topic_name=topic_name,
        display_name=display_name,
        master_key=key,
        enforce_ssl=True,
    )


def alarm_destinations(scope: Construct, topic: sns.ITopic, *, team_topic_arn: str) -> list[sns.ITopic]:
    """Where a stage's alarms notify: its own ``topic`` and, when configured (alarm_topic_arn), the team's
    existing topic, imported once per stack."""
    if not team_topic_arn:
        return [topic]
    stack = Stack.of(scope)
    existing = stack.node.try_find_child("TeamAlarmTopic")
    if existing is None:
        existing = sns.Topic.from_topic_arn(stack, "TeamAlarmTopic", team_topic_arn)
        # An alarm acts only on a topic in its own region (PutMetricAlarm rejects another region's ARN). The
        # stacks name no region, so the deploy checks it before anything is created, not at the first alarm.
        region = team_topic_arn.split(":")[3]
        CfnRule(
            stack,
            "TeamAlarmTopicInThisRegion",
            assertions=[
                CfnRuleAssertion(
                    assert_=Fn.condition_equals(Aws.REGION, region),
                    assert_description=f"alarm_topic_arn is in {region}: deploy this stage to {region}, or "
                    "name a topic in the stage's region",
                )
            ],
        )
    return [topic, existing]


@dataclass(frozen=True)
class AlarmTopicProps:
    # alarm_topic_name, fixed: the project key's policy names it.
    topic_name: str
    # The stage's endpoint name, which the topic's display name and the e-mail alarm carry.
    endpoint_name: str
    # alarm_email: "" for no e-mail subscription.
    email: str
    # alarm_topic_arn: "" for none.
    team_topic_arn: str


class AlarmTopic(Construct):
    """The stage's alarm topic (project key, TLS only), the e-mail it delivers to, and ``destinations``:
    the topic plus the team's ``alarm_topic_arn``, which every alarm of the stage notifies.

    The e-mail subscription has a dead-letter queue: a notification SNS could not deliver is kept there
    instead of dropped, and an alarm on the queue makes the loss visible on the topic's other routes.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: AlarmTopicProps, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.topic = encrypted_topic(
            self,
            "Topic",
            topic_name=props.topic_name,
            display_name=f"{props.endpoint_name} alarms (endpoint and API)",
            key=key,
        )
        self.destinations = alarm_destinations(self, self.topic, team_topic_arn=props.team_topic_arn)
        self.alarms: list[cloudwatch.Alarm] = []
        if not props.email:
            return
        # SNS writes to an encrypted dead-letter queue only with a customer managed key whose policy lets the
        # SNS service use it (https://docs.aws.amazon.com/sns/latest/dg/sns-dead-letter-queues.html):
        # ProjectKey grants that to this topic alone.
        undelivered = dead_letter_queue(
            self, "Undelivered", key=key, of="the alarm e-mail subscription (an SNS redrive policy, which "
            "cdk-nag does not recognise as a DLQ)"
        )  # fmt: skip
        self.topic.add_subscription(
            subscriptions.EmailSubscription(props.email, dead_letter_queue=undelivered)
        )
        self.alarms.append(
            undelivered_alarm(
                self,
                "UndeliveredNotifications",
                undelivered,
                description=f"{props.endpoint_name}: alarm e-mails to {props.email} were not "
                "delivered (see the dead-letter queue)",
            )
        )
        notify_on_change(self.alarms, self.destinations)
