"""How this project declares an alarm: one place for the choices every alarm shares, and the dead-letter
queue (with its alarm) every notification route keeps what it could not deliver in."""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

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


def notify_on_change(alarms: Iterable[cloudwatch.Alarm], topics: Iterable[sns.ITopic]) -> None:
    """``topics`` hear when each alarm fires and when it clears: an operator knows when to stop looking."""
    actions = [cloudwatch_actions.SnsAction(topic) for topic in topics]
    for each in alarms:
        each.add_alarm_action(*actions)
        each.add_ok_action(*actions)
