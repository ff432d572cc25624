"""The front door's alarms reach the stage's alarm topics: a function in the stage's region, subscribed
across regions to the edge stack's us-east-1 topic, republishes each notification
(``edge_alarm_forwarder/index.py``).

An alarm acts only on a topic of its own region, the web ACL's metrics (and so its alarm) are in
us-east-1, and the edge stack cannot name the stage's region (the regional stacks name none): so the
regional front door stack subscribes itself. ``AWS::SNS::Subscription`` takes the topic's ``Region`` for a
cross-region subscription
(https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-sns-subscription.html),
and SNS delivers across regions to Lambda
(https://docs.aws.amazon.com/sns/latest/dg/sns-cross-region-delivery.html).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, Duration, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.constructs.alarms import dead_letter_queue, notify_on_change, undelivered_alarm
from stacks.constructs.log_group import function_role

FORWARDER_SOURCE = Path(__file__).resolve().parent / "edge_alarm_forwarder"
RUNTIME_REASON = (
    "Pinned to python3.13 with the prediction function: a runtime upgrade is a deliberate change made with "
    "its tests (tests/infra/test_alarm_forwarder.py)."
)


class EdgeAlarmForwarder(Construct):
    """``source_topic_arn`` (a topic of ``source_region``) -> the function -> ``destinations``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source_topic_arn: str,
        source_region: str,
        destinations: list[sns.ITopic],
        key: kms.IKey,
        log_group: logs.ILogGroup,
        description: str,
    ) -> None:
        super().__init__(scope, construct_id)
        # After Lambda's retries of an asynchronous invocation, the notification is kept here, and the
        # queue's alarm tells the destinations one was lost.
        undelivered = dead_letter_queue(self, "Undelivered", key=key, of="the front door's alarm forwarder")
        role, policy = function_role(
            self,
            description=description,
            log_group=log_group,
            statements=[
                iam.PolicyStatement(
                    sid="PublishToTheStageAlarmTopics",
                    actions=["sns:Publish"],
                    resources=[topic.topic_arn for topic in destinations],
                ),
                # The stage's topic and the dead-letter queue are encrypted with the project key: a
                # publisher needs a data key (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html).
                iam.PolicyStatement(
                    sid="EncryptForTheTopicAndQueue",
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=[key.key_arn],
                ),
                iam.PolicyStatement(
                    sid="KeepUndeliveredNotifications",
                    actions=["sqs:SendMessage"],
                    resources=[undelivered.queue_arn],
                ),
            ],
        )
        self.role = role
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.ARM_64,
            handler="index.handler",
            code=lambda_.Code.from_asset(str(FORWARDER_SOURCE), exclude=["__pycache__", "*.pyc"]),
            role=role,
            memory_size=128,
            timeout=Duration.seconds(30),
            environment={"TOPIC_ARNS": ",".join(topic.topic_arn for topic in destinations)},
            dead_letter_queue=undelivered,
            log_group=log_group,
        )
        # The policy before the first delivery; the Role GetAtt already orders the role (cfn-lint W3005).
        self.function.node.default_child.add_override(
            "DependsOn", [Stack.of(self).get_logical_id(policy.node.default_child)]
        )
        not_in_path = "The forwarder runs once per alarm state change (a few a month), off any request path"
        Validations.of(self.function).acknowledge(
            Acknowledgment(id="AwsSolutions-L1", reason=RUNTIME_REASON),
            Acknowledgment(id="Serverless-LambdaLatestVersion", reason=RUNTIME_REASON),
            Acknowledgment(
                id="NIST.800.53.R5-LambdaConcurrency",
                reason=f"{not_in_path}; a reservation would take from the prediction function's pool.",
            ),
            Acknowledgment(
                id="Serverless-LambdaTracing",
                reason=f"{not_in_path}; one Publish per topic, logged by Lambda; X-Ray would widen its role.",
            ),
            Acknowledgment(
                id="NIST.800.53.R5-LambdaInsideVPC",
                reason="The forwarder calls only the SNS API over AWS's TLS endpoint with SigV4; a VPC would "
                "need endpoints without narrowing what its IAM policy allows.",
            ),
            Acknowledgment(
                id="Serverless-LambdaAsyncFailureDestination",
                reason="Its dead-letter queue (DeadLetterConfig) keeps what Lambda's retries could not "
                "deliver, and an alarm watches it; a second destination would hold the same events.",
            ),
        )
        permission = lambda_.CfnPermission(
            self,
            "InvokeFromTheEdgeTopic",
            action="lambda:InvokeFunction",
            function_name=self.function.function_arn,
            principal="sns.amazonaws.com",
            source_arn=source_topic_arn,
        )
        subscription = sns.CfnSubscription(
            self,
            "Subscription",
            topic_arn=source_topic_arn,
            protocol="lambda",
            endpoint=self.function.function_arn,
            region=source_region,
        )
        subscription.add_dependency(permission)
        Validations.of(subscription).acknowledge(
            Acknowledgment(
                id="Serverless-SNSRedrivePolicy",
                reason="SNS retries a delivery to Lambda (an AWS-managed endpoint) 100,015 times in 23 days "
                "(https://docs.aws.amazon.com/sns/latest/dg/sns-message-delivery-retries.html), and the "
                "function keeps what it cannot forward in its own dead-letter queue; a subscription DLQ "
                "would have to be in us-east-1, the subscription's region, out of the stage's sight.",
            )
        )
        alarms = [
            undelivered_alarm(
                self,
                "UndeliveredAlarms",
                undelivered,
                description="front door alarm notifications were not forwarded to the stage's alarm topics "
                "(see the forwarder's dead-letter queue and log group)",
            )
        ]
        notify_on_change(alarms, destinations)
