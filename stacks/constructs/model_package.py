"""The stage's model registry: its model package group, the deploy-time package check and approval notices.

Every model trained for a stage registers a version in the stage's group (``python -m training.register``,
``PendingManualApproval``); a person approves it; ``make promote`` writes its versioned ARN into cdk.json;
the serving stack builds its Model from that package. One group per stage, like the bucket and the key: a
package names an artifact in the stage's own bucket, encrypted with the stage's key, so a shared group
would need every stage's model role to read every stage's bucket and key (and a dev training role could
register into what prod deploys from).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import (
    Acknowledgment,
    Aws,
    CfnRule,
    CfnRuleAssertion,
    CustomResource,
    Duration,
    Fn,
    Stack,
    Validations,
)
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.constructs.alarms import dead_letter_queue, undelivered_alarm
from stacks.constructs.log_group import LogGroupProps, function_role, stage_log_group
from stacks.constructs.removal_policy import RETAIN_EXCEPT_ON_CREATE

CHECK_SOURCE = Path(__file__).resolve().parent / "model_package_check"
CHECK_RUNTIME_REASON = (
    "Pinned to python3.13, the runtime the check's code and tests target, like the prediction function: a "
    "runtime upgrade is a deliberate change made with its tests."
)
# CloudFormation invokes a custom resource's function asynchronously with a pre-signed callback URL
# (https://docs.aws.amazon.com/lambda/latest/dg/services-cloudformation.html).
CHECK_ASYNC_REASON = (
    "CloudFormation's only invocation: the function answers CloudFormation itself on every outcome (FAILED "
    "with the reason on any error, before its own timeout), so the stack event is the failure record; a "
    "queued copy of the event would hold a deploy request that nobody can answer any more."
)
# SageMaker sends this event whenever a version of a group changes, approval included
# (https://docs.aws.amazon.com/sagemaker/latest/dg/model-registry-staging-construct-event-bridge.html).
PACKAGE_STATE_CHANGE = "SageMaker Model Package State Change"
# ModelApprovalStatus values (DescribeModelPackage).
APPROVED, REJECTED, PENDING = "Approved", "Rejected", "PendingManualApproval"


def group_arn(group_name: str) -> str:
    return f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:model-package-group/{group_name}"


def versions_arn(group_name: str) -> str:
    """Every version of the stage's group: ``model-package/<group>/<version>``."""
    return f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:model-package/{group_name}/*"


def describe_versions_statement(group_name: str) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid="DescribeStagePackages",
        actions=["sagemaker:DescribeModelPackage"],
        resources=[versions_arn(group_name)],
    )


def versions_nag_arn(group_name: str) -> str:
    """How cdk-nag prints :func:`versions_arn` in a finding id."""
    return f"arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:model-package/{group_name}/*"


class ModelPackageGroup(Construct):
    """The stage's group, under a fixed name the tools derive from the stage.

    Kept when the stack goes (its versions are the record of what was trained, approved and served),
    but not after a failed first create, so a retry does not collide with the name.
    """

    def __init__(self, scope: Construct, construct_id: str, *, stage: str, group_name: str) -> None:
        super().__init__(scope, construct_id)
        self.group = sagemaker.CfnModelPackageGroup(
            self,
            "Group",
            model_package_group_name=group_name,
            model_package_group_description=f"dogbreed {stage}: every model trained for the stage; "
            "approved versions may be promoted to it",
        )
        self.group.apply_removal_policy(RETAIN_EXCEPT_ON_CREATE)
        self.group_name = group_name

    @staticmethod
    def register_statement(group_name: str) -> iam.PolicyStatement:
        """CreateModelPackage into ``group_name`` and no other (a new version is model-package/<group>/N)."""
        return iam.PolicyStatement(
            sid="RegisterModelVersions",
            actions=["sagemaker:CreateModelPackage"],
            resources=[group_arn(group_name), versions_arn(group_name)],
            # Only as a pending version: job code runs with this role, and must not approve its own model
            # (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemaker.html).
            conditions={"StringEquals": {"sagemaker:ModelApprovalStatus": PENDING}},
        )


@dataclass(frozen=True)
class ModelPackageCheckProps:
    stage: str
    # model_package_arn, a version of group_name in the stage's account and region, and the region and
    # account it names (StageConfig parses the ARN).
    package_arn: str
    package_region: str
    package_account: str
    group_name: str
    # model_source_id: the check's logical id follows the package.
    source_id: str
    # production: the deploy fails unless the package is Approved.
    require_approved: bool
    # The instance type the package must list; "" for a serverless endpoint.
    instance_type: str
    logs: LogGroupProps


class ModelPackageCheck(Construct):
    """Describes the stage's package at deploy time and, in a production stage, fails the deploy unless
    it is Approved, whatever cdk.json says. Gives the artifact's bucket and key for the model role's grant.

    The package ARN is part of the custom resource's logical id: promoting another package *creates* a new
    check (and deletes the old one in the cleanup phase, which the function answers without a call). A
    rollback deletes the new check and never re-runs the old one, and a stack delete only deletes, so
    the check blocks neither. Non-production stages may deploy a pending package (the check still
    describes it, so a missing or failed package fails the deploy before any Model is created).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: ModelPackageCheckProps,
        key: kms.IKey,
        expected_bucket: str,
        expected_image: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = stage_log_group(self, "LogGroup", props=props.logs, key=key)
        role, policy = function_role(
            self,
            description=f"dogbreed {props.stage}: deploy-time check of the served model package",
            log_group=self.log_group,
            statements=[describe_versions_statement(props.group_name)],
        )
        Validations.of(policy).acknowledge(
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::{versions_nag_arn(props.group_name)}]",
                reason="The check describes whichever version of the stage's own group cdk.json names; "
                "versions are numbered by SageMaker.",
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description=f"dogbreed {props.stage}: check the served model package at deploy time",
            runtime=lambda_.Runtime.PYTHON_3_13,
            architecture=lambda_.Architecture.ARM_64,
            handler="index.handler",
            code=lambda_.Code.from_asset(str(CHECK_SOURCE), exclude=["__pycache__", "*.pyc"]),
            role=role,
            memory_size=256,
            timeout=Duration.minutes(1),
            # A retried invocation would answer CloudFormation a second time; the handler answers every
            # outcome itself.
            retry_attempts=0,
            log_group=self.log_group,
        )
        # The policy before the function's first invocation. node.add_dependency would add the role as
        # well, which the Role GetAtt already orders (cfn-lint W3005), so the list is set whole.
        self.function.node.default_child.add_override(
            "DependsOn", [Stack.of(self).get_logical_id(policy.node.default_child)]
        )
        Validations.of(self.function).acknowledge(
            Acknowledgment(id="AwsSolutions-L1", reason=CHECK_RUNTIME_REASON),
            Acknowledgment(id="Serverless-LambdaLatestVersion", reason=CHECK_RUNTIME_REASON),
            Acknowledgment(id="Serverless-LambdaDLQ", reason=CHECK_ASYNC_REASON),
            Acknowledgment(id="NIST.800.53.R5-LambdaDLQ", reason=CHECK_ASYNC_REASON),
            Acknowledgment(id="Serverless-LambdaAsyncFailureDestination", reason=CHECK_ASYNC_REASON),
            Acknowledgment(
                id="NIST.800.53.R5-LambdaConcurrency",
                reason="CloudFormation invokes the check once per deploy of a new package; a reservation "
                "would take from the account's pool, which preflight budgets for the prediction function.",
            ),
            Acknowledgment(
                id="Serverless-LambdaTracing",
                reason="One DescribeModelPackage call per deploy, logged by the function; X-Ray would need "
                "a wider role than the one call the check may make.",
            ),
            Acknowledgment(
                id="NIST.800.53.R5-LambdaInsideVPC",
                reason="The check calls only the SageMaker API and the pre-signed CloudFormation response "
                "URL over AWS's TLS endpoints; a VPC would need NAT or endpoints without narrowing its IAM.",
            ),
        )

        self.resource = CustomResource(
            self,
            f"Check{props.source_id}",
            service_token=self.function.function_arn,
            resource_type="Custom::ModelPackageCheck",
            # If the function never starts, fail the deploy in minutes instead of CloudFormation's hour.
            service_timeout=Duration.minutes(5),
            properties={
                "ModelPackageArn": props.package_arn,
                "RequireApproved": "true" if props.require_approved else "false",
                # What the package must match (it pinned them when it was registered): the model role reads
                # only this stage's bucket, and the endpoint runs the stage's image on its instance type.
                "ExpectedBucket": expected_bucket,
                "ExpectedImage": expected_image,
                "InstanceType": props.instance_type,
            },
        )
        self.artifact_arn = (
            f"arn:{Aws.PARTITION}:s3:::{self.resource.get_att_string('ArtifactBucket')}/"
            f"{self.resource.get_att_string('ArtifactKey')}"
        )
        # The stacks name no region or account: check the package's before anything is created.
        region, account = props.package_region, props.package_account
        stack = Stack.of(self)
        CfnRule(
            stack,
            "ModelPackageInThisAccountAndRegion",
            assertions=[
                CfnRuleAssertion(
                    assert_=Fn.condition_and(
                        Fn.condition_equals(Aws.REGION, region),
                        Fn.condition_equals(Aws.ACCOUNT_ID, account),
                    ),
                    assert_description=f"model_package_arn is a package of account {account} in {region}: "
                    "deploy there, or promote a package registered in this stage's account and region",
                )
            ],
        )


@dataclass(frozen=True)
class ModelApprovalNoticesProps:
    stage: str
    # The stage's endpoint name, which the undelivered-notices alarm carries.
    endpoint_name: str
    group_name: str
    # model_approval_rule_name, fixed: the project key's policy names it.
    rule_name: str


class ModelApprovalNotices(Construct):
    """Approvals and rejections of the stage's packages reach the stage's alarm destinations: its own topic
    and the team's ``alarm_topic_arn``, where one is configured (``alarm_destinations``). SageMaker may send
    more than one event for a change, and an edit of an approved version's metadata sends "Approved" again:
    a notice says what the version's status is now.

    A notice EventBridge could not publish (after its retries) is kept in a dead-letter queue, and an alarm
    on the queue tells the alarm destinations, like the alarm topic's own undelivered e-mails.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        props: ModelApprovalNoticesProps,
        topics: list[sns.ITopic],
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        # EventBridge may use the project key for this stage's rule alone (ProjectKey's policy).
        undelivered = dead_letter_queue(self, "Undelivered", key=key, of="the approval-notice rule's targets")
        # EventBridge publishes with a role of its own: granting the service principal instead would add an
        # unconditioned key-policy statement (Topic.grantPublish) usable by any account's rules.
        publisher = iam.Role(
            self,
            "PublishRole",
            assumed_by=iam.ServicePrincipal("events.amazonaws.com"),
            description=f"dogbreed {props.stage}: publish model approval notices to the alarm topic",
        )
        iam.ManagedPolicy(
            self,
            "PublishPolicy",
            roles=[publisher],
            statements=[
                iam.PolicyStatement(
                    sid="PublishNotices", actions=["sns:Publish"], resources=[t.topic_arn for t in topics]
                ),
                # The stage's topic is encrypted with the project key
                # (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html); a team topic's own key,
                # if it has one, must let this account's roles use it.
                iam.PolicyStatement(
                    sid="EncryptForTopic",
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=[key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"sns.{Aws.REGION}.amazonaws.com"}},
                ),
            ],
        )
        detail = events.EventField
        self.rule = events.Rule(
            self,
            "Rule",
            # Fixed, so the project key's policy can let EventBridge encrypt for this rule alone.
            rule_name=props.rule_name,
            description=f"dogbreed {props.stage}: approvals and rejections of {props.group_name} versions",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[PACKAGE_STATE_CHANGE],
                detail={
                    "ModelPackageGroupName": [props.group_name],
                    "ModelApprovalStatus": [APPROVED, REJECTED],
                },
            ),
            targets=[
                targets.SnsTopic(
                    topic,
                    role=publisher.without_policy_updates(),
                    dead_letter_queue=undelivered,
                    message=events.RuleTargetInput.from_text(
                        f"{props.group_name} version "
                        f"{detail.from_path('$.detail.ModelPackageVersion')} is now "
                        f"{detail.from_path('$.detail.ModelApprovalStatus')}: "
                        f"{detail.from_path('$.detail.ModelPackageArn')}"
                    ),
                )
                for topic in topics
            ],
        )
        self.alarms = [
            undelivered_alarm(
                self,
                "UndeliveredNotices",
                undelivered,
                description=f"{props.endpoint_name}: model approval notices could not be published to the "
                "alarm destinations (see the dead-letter queue)",
            )
        ]
