"""Log groups: a stage's (the configured retention, the project key, kept in production), the account's
shared training log group, and what a Lambda function needs to write its own.

Kept means kept on deletion, not on a failed first create: the endpoint's group has the fixed name
SageMaker writes to, so a group left behind by a rolled-back create would make the retry fail.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import LOG_RETENTION_DAYS, TRAINING_LOG_GROUP
from stacks.constructs.removal_policy import RETAIN_EXCEPT_ON_CREATE


@dataclass(frozen=True)
class LogGroupProps:
    # log_retention_days
    retention_days: int
    # production: kept when the stack goes.
    retained: bool


def stage_log_group(
    scope: Construct, construct_id: str, *, props: LogGroupProps, key: kms.IKey, name: str | None = None
) -> logs.LogGroup:
    """Declared by the stack rather than left to the service, which would create it unencrypted and
    without retention. ``name`` fixes the name where a service writes to a well-known group."""
    return logs.LogGroup(
        scope,
        construct_id,
        log_group_name=name,
        retention=retention(props.retention_days),
        encryption_key=key,
        removal_policy=RETAIN_EXCEPT_ON_CREATE if props.retained else RemovalPolicy.DESTROY,
    )


def retention(days: int) -> logs.RetentionDays:
    """The RetentionDays member for a number of days that config validated against the same list."""
    members = [m for m in logs.RetentionDays if m is not logs.RetentionDays.INFINITE]
    return dict(zip(LOG_RETENTION_DAYS, members, strict=True))[days]


class TrainingLogGroup(Construct):
    """``/aws/sagemaker/TrainingJobs``, where SageMaker writes every training job's logs.

    One group per account and region, shared by every stage (and anything else training there), so one stage
    declares it (``training_log_group_owner``, the production stage by default) with its retention and key,
    and keeps it when the stack goes: the other stages' jobs still write to it. No training role may create
    it, so SageMaker never creates it unencrypted and without retention. An account that trained before has
    the group already; deploy the owner's training stack once with ``--import-existing-resources``
    (CloudFormation adopts a named resource whose DeletionPolicy is Retain or RetainExceptOnCreate,
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/import-resources-automatically.html).
    """

    def __init__(self, scope: Construct, construct_id: str, *, retention_days: int, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=TRAINING_LOG_GROUP,
            retention=retention(retention_days),
            encryption_key=key,
            removal_policy=RETAIN_EXCEPT_ON_CREATE,
        )


def write_logs_statement(log_group: logs.ILogGroup) -> iam.PolicyStatement:
    """What a function needs to write its own log group, and nothing of any other."""
    return iam.PolicyStatement(
        sid="WriteOwnLogs",
        actions=["logs:CreateLogStream", "logs:PutLogEvents"],
        resources=[log_group.log_group_arn],
    )


def function_role(
    scope: Construct, *, description: str, log_group: logs.ILogGroup, statements: list[iam.PolicyStatement]
) -> tuple[iam.IRole, iam.ManagedPolicy]:
    """A Lambda function's role ("Role" in ``scope``) and its one customer-managed policy ("Policy"):
    ``statements`` plus writing ``log_group``. The role comes back immutable, so no grant of a construct
    the function is handed to can widen it behind that policy."""
    role = iam.Role(
        scope, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=description
    )
    policy = iam.ManagedPolicy(
        scope, "Policy", roles=[role], statements=[*statements, write_logs_statement(log_group)]
    )
    return role.without_policy_updates(), policy
