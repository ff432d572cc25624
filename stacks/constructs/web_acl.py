"""The front door's WAF web ACL: a rate limit per client IP on the API, AWS managed rules that fit an
image-upload API, logs in a KMS-encrypted log group, and an alarm on blocked-request spikes.

A web ACL for a CloudFront distribution has scope CLOUDFRONT and lives in us-east-1, with its metrics and
the log group it writes to (https://docs.aws.amazon.com/waf/latest/developerguide/logging-cw-logs.html),
so this construct belongs to the edge stack (stacks/edge.py).
"""

from __future__ import annotations

import json

from aws_cdk import Aws
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from stacks.constructs.alarms import PERIOD, alarm

# What WAF answers a client over the rate limit: the API's own error shape, so the page and API callers
# read one format (lambda/api_errors.py), with 429 like the API's own throttling.
RATE_LIMITED_BODY = {
    "error": {
        "code": "rate_limited",
        "message": "too many requests from your address; retry in a few minutes",
    }
}
# A rate-based rule counts requests over the last 5 minutes (the window front_door_rate_limit is per).
RATE_WINDOW_SECONDS = 300
# The API takes an image as its body, and nothing of it is ever a path, a URL, markup or an instance
# metadata address to any interpreter: the handler checks its magic number and hands the bytes to an
# image decoder (lambda/prediction_request.py). These rules of the common rule set read the first 16 KB
# of the body as text and would block photos at random (a "../" is one chance in 16.7 million per byte
# offset of a JPEG's entropy-coded data: about one photo in a thousand over 16 KB), and the size rule blocks
# every body over 8 KB, that is every photo
# (https://docs.aws.amazon.com/waf/latest/developerguide/aws-managed-rule-groups-baseline.html). They
# count instead of block; the page's paths take GET and HEAD only, so no other body reaches the origin.
BODY_RULES_COUNTED = (
    "SizeRestrictions_BODY",
    "GenericLFI_BODY",
    "GenericRFI_BODY",
    "CrossSiteScripting_BODY",
    "EC2MetaDataSSRF_BODY",
)
# Priority order: the rate limit first (the cheapest rule, and it keeps a flood from costing managed-rule
# evaluations), then the IP reputation list, then the rule groups that inspect the request.
MANAGED_RULE_GROUPS = (
    ("IpReputation", "AWSManagedRulesAmazonIpReputationList", ()),
    ("KnownBadInputs", "AWSManagedRulesKnownBadInputsRuleSet", ()),
    ("CommonRuleSet", "AWSManagedRulesCommonRuleSet", BODY_RULES_COUNTED),
)
# Blocked requests per minute that page someone: a burst well above one person's retries, below a scan.
BLOCKED_REQUESTS_ALARM_PER_MINUTE = 100


def _visibility(metric_name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric_name, sampled_requests_enabled=True
    )


class FrontDoorWebAcl(Construct):
    """The web ACL, its logging configuration and its blocked-requests alarm (``self.alarms``)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        rate_limit: int,
        api_path: str,
        log_group: logs.LogGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        rate_rule = wafv2.CfnWebACL.RuleProperty(
            name="RateLimitPerClientIp",
            priority=0,
            statement=wafv2.CfnWebACL.StatementProperty(
                rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                    limit=rate_limit,
                    aggregate_key_type="IP",
                    evaluation_window_sec=RATE_WINDOW_SECONDS,
                    # Only the API counts: a page load (four static files, cached) is not a prediction.
                    scope_down_statement=wafv2.CfnWebACL.StatementProperty(
                        byte_match_statement=wafv2.CfnWebACL.ByteMatchStatementProperty(
                            field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(uri_path={}),
                            positional_constraint="EXACTLY",
                            search_string=api_path,
                            text_transformations=[
                                wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")
                            ],
                        )
                    ),
                )
            ),
            action=wafv2.CfnWebACL.RuleActionProperty(
                block=wafv2.CfnWebACL.BlockActionProperty(
                    custom_response=wafv2.CfnWebACL.CustomResponseProperty(
                        response_code=429, custom_response_body_key="rate_limited"
                    )
                )
            ),
            visibility_config=_visibility("RateLimitPerClientIp"),
        )
        managed_rules = [
            wafv2.CfnWebACL.RuleProperty(
                name=rule_name,
                priority=priority,
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS",
                        name=group,
                        rule_action_overrides=[
                            wafv2.CfnWebACL.RuleActionOverrideProperty(
                                name=counted, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                            )
                            for counted in counted_rules
                        ]
                        or None,
                    )
                ),
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                visibility_config=_visibility(rule_name),
            )
            for priority, (rule_name, group, counted_rules) in enumerate(MANAGED_RULE_GROUPS, start=1)
        ]
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=name,
            description=f"{name}: rate limit per client IP, IP reputation, known bad inputs, common rules",
            scope="CLOUDFRONT",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            custom_response_bodies={
                "rate_limited": wafv2.CfnWebACL.CustomResponseBodyProperty(
                    content_type="APPLICATION_JSON", content=json.dumps(RATE_LIMITED_BODY)
                )
            },
            rules=[rate_rule, *managed_rules],
            visibility_config=_visibility(name),
        )
        self.arn = self.web_acl.attr_arn
        # WAF names a CloudWatch Logs destination by the group's ARN without the ":*" suffix that the
        # group's Arn attribute carries, and only a group named aws-waf-logs-* (logging-cw-logs.html above).
        wafv2.CfnLoggingConfiguration(
            self,
            "Logging",
            resource_arn=self.web_acl.attr_arn,
            log_destination_configs=[
                f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{log_group.log_group_name}"
            ],
        )

        # Metrics of a CloudFront web ACL carry no Region dimension (it is required for every other
        # resource type): WebACL and Rule, with Rule "ALL" for the web ACL as a whole
        # (https://docs.aws.amazon.com/waf/latest/developerguide/waf-metrics.html).
        blocked = cloudwatch.Metric(
            namespace="AWS/WAFV2",
            metric_name="BlockedRequests",
            dimensions_map={"WebACL": name, "Rule": "ALL"},
            statistic="Sum",
            period=PERIOD,
        )
        blocked_alarm = alarm(
            self,
            "BlockedRequests",
            description=f"{name}: more than {BLOCKED_REQUESTS_ALARM_PER_MINUTE} requests a minute blocked, "
            "3 minutes in 5 (a scan, a flood over the rate limit, or a rule blocking real users: the WAF "
            f"log group {log_group.log_group_name} says which rule)",
            metric=blocked,
            threshold=BLOCKED_REQUESTS_ALARM_PER_MINUTE,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            periods=5,
            datapoints=3,
        )
        self.alarms = [blocked_alarm]
