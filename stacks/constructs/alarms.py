"""How this project declares an alarm: one place for the choices every alarm shares."""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_sns as sns
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


def notify_on_change(alarms: Iterable[cloudwatch.Alarm], topic: sns.ITopic) -> None:
    """``topic`` hears when each alarm fires and when it clears: an operator knows when to stop looking."""
    action = cloudwatch_actions.SnsAction(topic)
    for each in alarms:
        each.add_alarm_action(action)
        each.add_ok_action(action)
