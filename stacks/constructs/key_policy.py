"""Key-policy statements: which AWS service may use a stage's KMS key, and for which of its resources.

Each names one service principal (the Spot statements: any principal, narrowed by aws:PrincipalArn to
the account's service-linked role) and narrows it to this account's resources by a source or encryption
context condition: the keys also encrypt other data, so an unconditioned service principal would be a
confused deputy for any account's resources (https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html).
"""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam


def log_groups_statement(log_group_name: str = "*") -> iam.PolicyStatement:
    """CloudWatch Logs encrypts a log group with a CMK only if the key policy lets the regional logs
    service use it, scoped to this account's log groups (``log_group_name``, a name or a pattern) by
    encryption context (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html)."""
    return iam.PolicyStatement(
        principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
        actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        resources=["*"],
        conditions={
            "ArnLike": {
                "kms:EncryptionContext:aws:logs:arn": (
                    f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{log_group_name}"
                )
            }
        },
    )


def alarms_statement() -> iam.PolicyStatement:
    """CloudWatch alarms publish to a KMS-encrypted alarm topic only if the key lets them
    (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services).
    Only this account's alarms."""
    return iam.PolicyStatement(
        sid="CloudWatchAlarmsOfThisAccount",
        principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions=["kms:Decrypt", "kms:GenerateDataKey*"],
        resources=["*"],
        conditions={
            "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
            "ArnLike": {
                "aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"
            },
        },
    )


def topic_dead_letter_statement(topic_name: str) -> iam.PolicyStatement:
    """An alarm topic keeps undeliverable e-mails in a queue encrypted with the key; SNS may use it for
    that one topic (https://docs.aws.amazon.com/sns/latest/dg/sns-dead-letter-queues.html)."""
    return iam.PolicyStatement(
        sid="AlarmTopicDeadLetterQueue",
        principals=[iam.ServicePrincipal("sns.amazonaws.com")],
        actions=["kms:Decrypt", "kms:GenerateDataKey*"],
        resources=["*"],
        conditions={
            "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
            "ArnEquals": {
                "aws:SourceArn": f"arn:{Aws.PARTITION}:sns:{Aws.REGION}:{Aws.ACCOUNT_ID}:{topic_name}"
            },
        },
    )


def rule_dead_letter_statement(rule_name: str) -> iam.PolicyStatement:
    """A model approval notice EventBridge cannot publish goes to a dead-letter queue encrypted with the
    key, which EventBridge writes as its service principal: only for the one rule ``rule_name``
    (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-event-delivery.html#eb-rule-dlq)."""
    return iam.PolicyStatement(
        sid="ModelApprovalNotices",
        principals=[iam.ServicePrincipal("events.amazonaws.com")],
        actions=["kms:Decrypt", "kms:GenerateDataKey*"],
        resources=["*"],
        conditions={
            "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
            "ArnEquals": {
                "aws:SourceArn": f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:rule/{rule_name}"
            },
        },
    )


def spot_instance_volume_statements() -> list[iam.PolicyStatement]:
    """EC2 launches and manages Spot Instances (the training host) as the AWSServiceRoleForEC2Spot
    service-linked role, which may use a customer managed key for their EBS volumes only if the key
    lets it (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/service-linked-roles-spot-instance-requests.html;
    the two statements of https://docs.aws.amazon.com/autoscaling/ec2/userguide/key-policy-requirements-EBS-encryption.html).
    The role is matched by aws:PrincipalArn instead of being the principal: a key policy whose principal
    does not exist is rejected (https://docs.aws.amazon.com/kms/latest/APIReference/API_PutKeyPolicy.html),
    and EC2 creates the role only at the account's first Spot request, after the storage stack."""
    spot_role = (
        f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/aws-service-role/spot.amazonaws.com/"
        "AWSServiceRoleForEC2Spot"
    )
    only_spot_role = {"ArnEquals": {"aws:PrincipalArn": spot_role}}
    return [
        iam.PolicyStatement(
            sid="SpotInstanceVolumes",
            principals=[iam.AnyPrincipal()],
            actions=[
                "kms:Encrypt",
                "kms:Decrypt",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:DescribeKey",
            ],
            resources=["*"],
            conditions=only_spot_role,
        ),
        iam.PolicyStatement(
            sid="SpotInstanceVolumeGrants",
            principals=[iam.AnyPrincipal()],
            actions=["kms:CreateGrant"],
            resources=["*"],
            conditions={**only_spot_role, "Bool": {"kms:GrantIsForAWSResource": "true"}},
        ),
    ]
