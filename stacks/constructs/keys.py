"""The stage's customer-managed KMS keys: the project key (stage region) and the front door's edge key
(us-east-1), each with the key-policy statements (``key_policy.py``) of the services that use it."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.constructs.key_policy import (
    alarms_statement,
    log_groups_statement,
    rule_dead_letter_statement,
    spot_instance_volume_statements,
    topic_dead_letter_statement,
)
from stacks.constructs.removal_policy import RETAIN_EXCEPT_ON_CREATE


@dataclass(frozen=True)
class ProjectKeyProps:
    stage: str
    # The stack prefix: the key's alias is alias/<prefix>.
    name_prefix: str
    # training_host_enabled: the training host's Spot volumes use the key.
    spot_instance_volumes: bool
    # The fixed names of the one rule and the one topic whose dead-letter queues the key encrypts.
    approval_rule_name: str
    alarm_topic_name: str


class ProjectKey(Construct):
    """The customer-managed key for the bucket, SageMaker volumes, data capture and log groups."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ProjectKeyProps) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            alias=f"alias/{props.name_prefix}",
            description=f"dogbreed {props.stage}: S3 objects, SageMaker volumes, data capture, log groups",
            enable_key_rotation=True,
            removal_policy=RETAIN_EXCEPT_ON_CREATE,
        )
        statements = spot_instance_volume_statements() if props.spot_instance_volumes else []
        statements += [
            log_groups_statement(),
            alarms_statement(),
            rule_dead_letter_statement(props.approval_rule_name),
            # Granted whether or not alarm_email is set: -c alarm_email may name an address on the serving
            # stack's deploy alone, and a queue SNS cannot write would lose every notification it holds.
            topic_dead_letter_statement(props.alarm_topic_name),
        ]
        for statement in statements:
            self.key.add_to_resource_policy(statement)


def edge_key(
    scope: Construct, construct_id: str, *, stage: str, name_prefix: str, waf_log_group: str
) -> kms.Key:
    """The front door's us-east-1 key (alias/<prefix>-edge), for the WAF log group ``waf_log_group`` and
    the edge alarm topic: CloudWatch Logs and SNS use a key of their own region only, and the project key
    lives in the stage's region. Built in ``scope`` itself (the edge stack), where its logical id was
    minted."""
    key = kms.Key(
        scope,
        construct_id,
        alias=f"alias/{name_prefix}-edge",
        description=f"dogbreed {stage}: front door WAF logs and alarm topic (us-east-1)",
        enable_key_rotation=True,
        removal_policy=RETAIN_EXCEPT_ON_CREATE,
    )
    key.add_to_resource_policy(log_groups_statement(waf_log_group))
    key.add_to_resource_policy(alarms_statement())
    return key
