"""Front door (the stage's region): CloudFront with the web page and the prediction API, behind the
web ACL of the edge stack (stacks/edge.py). Optional per stage: ``front_door_enabled``.

The web ACL's ARN (us-east-1) and the Function URL's host name arrive as ``Fn::GetStackOutput`` reads of
those stacks' outputs, which CloudFormation resolves across regions as well
(https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/intrinsic-function-reference-getstackoutput.html):
no export, and no custom resource to read another region (stacks/deployment.py builds them).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import CLOUDFRONT_REGION, StageConfig
from stacks.constructs.alarm_forwarder import EdgeAlarmForwarder
from stacks.constructs.alarm_topic import alarm_destinations
from stacks.constructs.front_door import (
    DistributionLogBucket,
    FrontDoorDistribution,
    PageBucket,
    PageDeployment,
    default_region_rule,
)
from stacks.constructs.log_group import LogGroupProps, stage_log_group

WEB_SOURCE = Path(__file__).resolve().parent.parent / "web"
# What the page is: its HTML, CSS and JS, nothing the repository keeps next to them.
WEB_FILES = ("index.html", "*.css", "*.js", "*.svg")


class FrontDoorStack(Stack):
    """The distribution, the page's bucket and its deployment, and the outputs a user opens."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        api_host: str,
        api_function_arn: str,
        web_acl_arn: str,
        edge_alarm_topic_arn: str,
        alarm_topic: sns.ITopic,
        key: kms.IKey,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        logs_props = LogGroupProps(retention_days=config.log_retention_days, retained=config.production)
        page = PageBucket(self, "Page")
        logs = DistributionLogBucket(self, "Logs", expiration_days=config.access_log_expiration_days)
        front = FrontDoorDistribution(
            self,
            "Distribution",
            page_bucket=page.bucket,
            api_host=api_host,
            api_function_arn=api_function_arn,
            web_acl_arn=web_acl_arn,
            log_bucket=logs.bucket,
            api_timeout_seconds=config.lambda_timeout_seconds,
            domain_name=config.front_door_domain_name,
            certificate_arn=config.front_door_certificate_arn,
            description=f"dogbreed {config.stage}: web page and prediction API",
        )
        forwarder = EdgeAlarmForwarder(
            self,
            "EdgeAlarms",
            source_topic_arn=edge_alarm_topic_arn,
            source_region=CLOUDFRONT_REGION,
            destinations=alarm_destinations(self, alarm_topic, team_topic_arn=config.alarm_topic_arn),
            key=key,
            log_group=stage_log_group(self, "EdgeAlarmsLogs", props=logs_props, key=key),
            description=f"dogbreed {config.stage}: forward the front door's alarms from the edge stack",
        )
        default_region_rule(self, "FrontDoorInADefaultRegion")
        PageDeployment(
            self,
            "PageFiles",
            source_dir=WEB_SOURCE,
            files=WEB_FILES,
            bucket=page.bucket,
            distribution=front.distribution,
            log_group=stage_log_group(self, "PageFilesLogs", props=logs_props, key=key),
            description=f"dogbreed {config.stage}: deploy the web page",
        )
        CfnOutput(self, "Url", value=front.url, description="The web page; POST images to /api/predict")
        CfnOutput(
            self,
            "EdgeAlarmForwarderRoleArn",
            value=forwarder.role.role_arn,
            description="Publishes the front door's alarms to the stage's topics: a KMS-encrypted "
            "alarm_topic_arn's key policy must let it use the key",
        )
        CfnOutput(self, "DistributionId", value=front.distribution.distribution_id)
        CfnOutput(self, "PageBucketName", value=page.bucket.bucket_name)
