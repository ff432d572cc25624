"""How this project declares an alarm: one place for the choices every alarm shares."""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Acknowledgment, Aws, CfnRule, CfnRuleAssertion, Duration, Fn, Stack, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.config import StageConfig

# Every alarm metric of the project is read per minute unless an alarm says why not.
PERIOD = Duration.minutes(1)
ABOVE = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
AT_LEAST = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD


def alarm(
    scope: Construct,
    construct_id: str,
    *,
    description: str,
    metric: cloudwatch.IMetric,
    threshold: float,
    comparison: cloudwatch.ComparisonOperator = AT_LEAST,
    periods: int,
    datapoints: int | None = None,
) -> cloudwatch.Alarm:
    """An alarm on ``datapoints`` of the last ``periods`` periods (all of them by default).

    Missing data is not breaching: these metrics report nothing while there is no traffic, and an
    idle stage is healthy.
    """
    return cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_description=description,
        metric=metric,
        threshold=threshold,
        comparison_operator=comparison,
        evaluation_periods=periods,
        datapoints_to_alarm=datapoints,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )


# SNS keeps a notification it could not deliver to the e-mail endpoint (a full mailbox, an address that
# bounces) in the subscription's dead-letter queue; SQS keeps a message at most 14 days.
UNDELIVERED_RETENTION = Duration.days(14)


class AlarmTopic(Construct):
    """The stage's alarm topic (project key, TLS only) and the e-mail it delivers to.

    The e-mail subscription has a dead-letter queue: a notification SNS could not deliver is kept there
    instead of dropped, and an alarm on the queue makes the loss visible on the topic's other routes.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self,
            "Topic",
            # A fixed name, so the key policy can name the one topic that may use the key for its
            # dead-letter queue (the topic is not retained, so a failed create leaves nothing behind).
            topic_name=config.alarm_topic_name,
            display_name=f"{config.endpoint_name} alarms (endpoint and API)",
            master_key=key,
            enforce_ssl=True,
        )
        self.alarms: list[cloudwatch.Alarm] = []
        if not config.alarm_email:
            return
        # SNS writes to an encrypted dead-letter queue only with a customer managed key whose policy lets the
        # SNS service use it (https://docs.aws.amazon.com/sns/latest/dg/sns-dead-letter-queues.html):
        # ProjectKey grants that to this topic alone.
        undelivered = dead_letter_queue(
            self, "Undelivered", key=key, of="the alarm e-mail subscription (an SNS redrive policy, which "
            "cdk-nag does not recognise as a DLQ)"
        )  # fmt: skip
        self.topic.add_subscription(
            subscriptions.EmailSubscription(config.alarm_email, dead_letter_queue=undelivered)
        )
        self.alarms.append(
            undelivered_alarm(
                self,
                "UndeliveredNotifications",
                undelivered,
                description=f"{config.endpoint_name}: alarm e-mails to {config.alarm_email} were not "
                "delivered (see the dead-letter queue)",
            )
        )


def dead_letter_queue(scope: Construct, construct_id: str, *, key: kms.IKey, of: str) -> sqs.Queue:
    """Where a notification route keeps what it could not deliver: project key, TLS only, 14 days."""
    queue = sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        enforce_ssl=True,
        retention_period=UNDELIVERED_RETENTION,
    )
    reason = f"This queue is the dead-letter queue of {of}; a dead-letter queue has no dead-letter queue."
    Validations.of(queue).acknowledge(
        Acknowledgment(id="AwsSolutions-SQS3", reason=reason),
        Acknowledgment(id="Serverless-SQSRedrivePolicy", reason=reason),
    )
    return queue


def undelivered_alarm(
    scope: Construct, construct_id: str, queue: sqs.IQueue, *, description: str
) -> cloudwatch.Alarm:
    """A notification that could not be delivered is itself an alarm, on the destinations' other routes."""
    return alarm(
        scope,
        construct_id,
        description=description,
        metric=queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Max"),
        threshold=1,
        periods=1,
    )


def alarm_destinations(scope: Construct, config: StageConfig, topic: sns.ITopic) -> list[sns.ITopic]:
    """Where a stage's alarms notify: its own topic and, when configured, the team's existing topic."""
    if not config.alarm_topic_arn:
        return [topic]
    stack = Stack.of(scope)
    existing = stack.node.try_find_child("TeamAlarmTopic")
    if existing is None:
        existing = sns.Topic.from_topic_arn(stack, "TeamAlarmTopic", config.alarm_topic_arn)
        # An alarm acts only on a topic in its own region (PutMetricAlarm rejects another region's ARN). The
        # stacks name no region, so the deploy checks it before anything is created, not at the first alarm.
        region = config.alarm_topic_arn.split(":")[3]
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


def notify_on_change(alarms: Iterable[cloudwatch.Alarm], topics: Iterable[sns.ITopic]) -> None:
    """``topics`` hear when each alarm fires and when it clears: an operator knows when to stop looking."""
    actions = [cloudwatch_actions.SnsAction(topic) for topic in topics]
    for each in alarms:
        each.add_alarm_action(*actions)
        each.add_ok_action(*actions)
