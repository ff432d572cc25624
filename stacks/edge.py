"""Edge (us-east-1): the front door's WAF web ACL, its key, logs, alarm and the alarm's topic.

CloudFront takes a web ACL of scope CLOUDFRONT, which exists only in us-east-1, with its metrics, the
alarms on them and the log group it writes to. So this one stack of a stage names its region; every other
stays environment-agnostic (stacks/deployment.py). The distribution's stack, in the stage's region, reads
the web ACL's ARN from this stack's output ``WebAclArn`` (``Fn::GetStackOutput`` with a Region).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Stack
from constructs import Construct

from stacks.config import CLOUDFRONT_REGION, StageConfig
from stacks.constructs.alarm_topic import encrypted_topic
from stacks.constructs.alarms import notify_on_change
from stacks.constructs.front_door import API_PATH
from stacks.constructs.keys import edge_key
from stacks.constructs.log_group import LogGroupProps, stage_log_group
from stacks.constructs.web_acl import FrontDoorWebAcl

# The output the front door stack reads (stacks/deployment.py).
WEB_ACL_ARN_OUTPUT = "WebAclArn"
ALARM_TOPIC_ARN_OUTPUT = "AlarmTopicArn"


class EdgeStack(Stack):
    """The stage's us-east-1 resources of the front door."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, env=Environment(region=CLOUDFRONT_REGION), **kwargs)
        waf_log_group = f"aws-waf-logs-{config.front_door_web_acl_name}"
        key = edge_key(
            self, "Key", stage=config.stage, name_prefix=config.stack_prefix, waf_log_group=waf_log_group
        )
        log_group = stage_log_group(
            self,
            "WafLogs",
            props=LogGroupProps(retention_days=config.log_retention_days, retained=config.production),
            key=key,
            name=waf_log_group,
        )
        self.web_acl = FrontDoorWebAcl(
            self,
            "WebAcl",
            name=config.front_door_web_acl_name,
            rate_limit=config.front_door_rate_limit,
            api_path=API_PATH,
            log_group=log_group,
        )
        # The web ACL's alarm can act only on a topic of this region. Its one subscriber is the front door
        # stack's forwarder in the stage's region (constructs/alarm_forwarder.py), which republishes to
        # the stage's alarm topics: the alarm reaches whoever the stage's other alarms reach.
        topic = encrypted_topic(
            self,
            "Notifications",
            topic_name=config.edge_alarm_topic_name,
            display_name=f"{config.endpoint_name} alarms (front door, us-east-1)",
            key=key,
        )
        notify_on_change(self.web_acl.alarms, [topic])
        CfnOutput(
            self, WEB_ACL_ARN_OUTPUT, value=self.web_acl.arn, description="The front door's WAF web ACL"
        )
        CfnOutput(self, ALARM_TOPIC_ARN_OUTPUT, value=topic.topic_arn, description="Front door alarms")
