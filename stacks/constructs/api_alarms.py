"""Prediction API alarms: what the endpoint's alarms cannot see, because callers never got that far."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.constructs.alarms import PERIOD, alarm, notify_on_change

# Provisioned concurrency autoscaling reacts within minutes; only spillover that outlasts it means the
# configured maximum is too small.
SPILLOVER_PERIOD = Duration.minutes(5)
SPILLOVER_PERIODS = 3


@dataclass(frozen=True)
class ApiAlarmsProps:
    # The stage's endpoint name, which the alarms' descriptions carry.
    endpoint_name: str
    # lambda_reserved_concurrency, lambda_provisioned_concurrency (0: no spillover alarm) and its maximum.
    reserved_concurrency: int
    provisioned_concurrency: int
    provisioned_concurrency_max: int


class ApiAlarms(Construct):
    """Function errors, throttles and (with provisioned concurrency) spillover, notifying ``destinations``.

    The handler answers every request from the contract's table itself, so a Lambda ``Errors``
    datapoint is something it could not answer: a timeout, running out of memory, a failed start.
    ``Throttles`` are callers turned away with a bare 429 once reserved concurrency is used up.
    ``ProvisionedConcurrencySpilloverInvocations`` are callers who waited for a cold start.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: ApiAlarmsProps,
        function: lambda_.Function,
        alias: lambda_.Alias,
        destinations: list[sns.ITopic],
    ) -> None:
        super().__init__(scope, construct_id)
        name = f"{props.endpoint_name} API"
        self.errors = alarm(
            self,
            "FunctionErrors",
            description=f"{name}: the function failed (timeout, memory, start) in 2 of 3 minutes",
            metric=function.metric_errors(period=PERIOD, statistic="Sum"),
            threshold=1,
            periods=3,
            datapoints=2,
        )
        self.throttles = alarm(
            self,
            "FunctionThrottles",
            description=(
                f"{name}: callers refused in 2 of 3 minutes, reserved concurrency "
                f"({props.reserved_concurrency}) used up"
            ),
            metric=function.metric_throttles(period=PERIOD, statistic="Sum"),
            threshold=1,
            periods=3,
            datapoints=2,
        )
        self.alarms = [self.errors, self.throttles]
        if props.provisioned_concurrency:
            minutes = int(SPILLOVER_PERIOD.to_minutes()) * SPILLOVER_PERIODS
            self.spillover = alarm(
                self,
                "ProvisionedConcurrencySpillover",
                description=(
                    f"{name}: callers waited for cold starts for {minutes} minutes; provisioned "
                    f"concurrency (max {props.provisioned_concurrency_max}) is too small"
                ),
                metric=alias.metric(
                    "ProvisionedConcurrencySpilloverInvocations", period=SPILLOVER_PERIOD, statistic="Sum"
                ),
                threshold=1,
                periods=SPILLOVER_PERIODS,
            )
            self.alarms.append(self.spillover)
        notify_on_change(self.alarms, destinations)
