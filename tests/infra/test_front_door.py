"""The front door: CloudFront in front of the IAM Function URL and a private page bucket, behind WAF.

What the templates promise: the API's origin is the ``live`` alias's URL signed by a Lambda origin access
control, the function's resource policy admits this distribution and nothing else, the page comes from a
bucket only the distribution can read, every response carries the security headers, and a us-east-1 web
ACL rate-limits clients per IP and runs the managed rule groups that fit an image-upload API.
"""

from __future__ import annotations

import json

import pytest

from stacks.constructs.web_acl import BODY_RULES_COUNTED, RATE_LIMITED_BODY
from stacks.security_headers import SECURITY_HEADERS

from .conftest import synth_stage

CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
# CloudFront's managed policies (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/).
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"


def only(resources: dict) -> tuple[str, dict]:
    assert len(resources) == 1, list(resources)
    return next(iter(resources.items()))


def distribution_config(synth) -> dict:
    _, distribution = only(synth.resources("frontdoor", "AWS::CloudFront::Distribution"))
    return distribution["Properties"]["DistributionConfig"]


def distribution_arn(synth) -> dict:
    distribution_id, _ = only(synth.resources("frontdoor", "AWS::CloudFront::Distribution"))
    return {
        "Fn::Join": [
            "",
            ["arn:", {"Ref": "AWS::Partition"}, ":cloudfront::", {"Ref": "AWS::AccountId"}, ":distribution/",
             {"Ref": distribution_id}],
        ]
    }  # fmt: skip


def page_bucket(synth) -> tuple[str, dict]:
    (found,) = [
        (k, b) for k, b in synth.resources("frontdoor", "AWS::S3::Bucket").items() if k.startswith("Page")
    ]
    return found


def web_acl(synth) -> dict:
    _, acl = only(synth.resources("edge", "AWS::WAFv2::WebACL"))
    return acl["Properties"]


@pytest.fixture(scope="module")
def custom_domain(tmp_path_factory):
    """prod with its own domain name, certificate and rate limit."""
    return synth_stage(
        tmp_path_factory.mktemp("front-door-domain"),
        "prod",
        front_door_domain_name="dogs.example.com",
        front_door_certificate_arn=CERTIFICATE,
        front_door_rate_limit=250,
    )


# --- the stacks ------------------------------------------------------------------------------------------


def stack_artifacts(synth) -> dict[str, dict]:
    manifest = json.loads((synth.outdir / "manifest.json").read_text())
    return {
        name: artifact
        for name, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }


def test_only_the_edge_stack_names_a_region_and_it_is_us_east_1(prod):
    environments = {name: artifact["environment"] for name, artifact in stack_artifacts(prod).items()}
    assert environments.pop("dogbreed-prod-edge") == "aws://unknown-account/us-east-1"
    assert set(environments.values()) == {"aws://unknown-account/unknown-region"}


def test_the_distribution_deploys_after_the_web_acl_and_the_api_it_reads(prod):
    dependencies = stack_artifacts(prod)["dogbreed-prod-frontdoor"]["dependencies"]
    assert {"dogbreed-prod-edge", "dogbreed-prod-api", "dogbreed-prod-storage"} <= set(dependencies)


def test_dev_has_no_public_front_door(dev):
    assert set(dev.templates) == {"storage", "training", "serving", "api"}
    for template in dev.templates.values():
        text = json.dumps(template)
        assert "AWS::CloudFront::" not in text
        assert "AWS::WAFv2::" not in text
        assert "cloudfront.amazonaws.com" not in text
    assert "FunctionUrlHost" not in dev.templates["api"]["Outputs"]


# --- the API behaviour and the function's resource policy ------------------------------------------------


def test_the_api_path_goes_to_the_function_url_signed_by_a_lambda_origin_access_control(prod):
    config = distribution_config(prod)
    (api,) = config["CacheBehaviors"]
    assert api["PathPattern"] == "/api/predict"
    assert api["ViewerProtocolPolicy"] == "https-only"
    assert set(api["AllowedMethods"]) >= {"POST"}
    assert api["CachePolicyId"] == CACHING_DISABLED
    # Every viewer header but Host: x-amz-content-sha256 reaches the URL, whose SigV4 check needs it.
    assert api["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER
    (origin,) = [o for o in config["Origins"] if o["Id"] == api["TargetOriginId"]]
    assert origin["DomainName"] == {
        "Fn::GetStackOutput": {"StackName": "dogbreed-prod-api", "OutputName": "FunctionUrlHost"}
    }
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert origin["CustomOriginConfig"]["OriginSSLProtocols"] == ["TLSv1.2"]
    # CloudFront waits as long as the handler may take to answer, within its 60 s ceiling.
    assert origin["CustomOriginConfig"]["OriginReadTimeout"] == min(
        prod.config.lambda_timeout_seconds + 1, 60
    )
    access_id = origin["OriginAccessControlId"]["Fn::GetAtt"][0]
    access = prod.templates["frontdoor"]["Resources"][access_id]["Properties"]["OriginAccessControlConfig"]
    assert access["OriginAccessControlOriginType"] == "lambda"
    assert (access["SigningBehavior"], access["SigningProtocol"]) == ("always", "sigv4")


def test_the_api_stack_publishes_the_url_host_it_computes(prod):
    output = prod.templates["api"]["Outputs"]["FunctionUrlHost"]["Value"]
    (url_id,) = [k for k in prod.resources("api", "AWS::Lambda::Url")]
    assert output == {"Fn::Select": [2, {"Fn::Split": ["/", {"Fn::GetAtt": [url_id, "FunctionUrl"]}]}]}


def test_only_this_distribution_may_invoke_the_function_url(prod):
    """Two statements on the alias (the URL's qualifier), for the CloudFront service principal, each
    conditioned on this distribution's ARN; nothing else in the stage adds a resource policy to it."""
    alias_id, _ = only(prod.resources("api", "AWS::Lambda::Alias"))

    def names_the_alias(function_name) -> bool:
        output = function_name.get("Fn::GetStackOutput", {}) if isinstance(function_name, dict) else {}
        return output.get("StackName") == "dogbreed-prod-api" and prod.templates["api"]["Outputs"][
            output["OutputName"]
        ]["Value"] == {"Ref": alias_id}

    everywhere = {
        f"{kind}/{logical_id}": p["Properties"]
        for kind in prod.templates
        for logical_id, p in prod.resources(kind, "AWS::Lambda::Permission").items()
    }
    permissions = {where: p for where, p in everywhere.items() if names_the_alias(p["FunctionName"])}
    # The only other resource policy of the stage: the edge topic may invoke the alarm forwarder.
    assert {p["Principal"] for w, p in everywhere.items() if w not in permissions} <= {"sns.amazonaws.com"}
    assert {p["Action"] for p in permissions.values()} == {
        "lambda:InvokeFunctionUrl",
        "lambda:InvokeFunction",
    }
    assert len(permissions) == 2
    for where, permission in permissions.items():
        assert where.startswith("frontdoor/"), where
        assert permission["Principal"] == "cloudfront.amazonaws.com"
        assert permission["SourceArn"] == distribution_arn(prod)
    by_action = {p["Action"]: p for p in permissions.values()}
    assert by_action["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "AWS_IAM"
    assert by_action["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] is True


def test_the_function_url_keeps_iam_auth(prod):
    _, url = only(prod.resources("api", "AWS::Lambda::Url"))
    assert url["Properties"]["AuthType"] == "AWS_IAM"
    assert url["Properties"]["Qualifier"] == "live"


# --- the page ----------------------------------------------------------------------------------------------


def test_the_page_comes_from_a_private_bucket_only_the_distribution_reads(prod):
    config = distribution_config(prod)
    default = config["DefaultCacheBehavior"]
    assert default["AllowedMethods"] == ["GET", "HEAD"]  # no body reaches the page's paths
    assert default["ViewerProtocolPolicy"] == "redirect-to-https"
    assert default["CachePolicyId"] == CACHING_OPTIMIZED
    assert config["DefaultRootObject"] == "index.html"
    (origin,) = [o for o in config["Origins"] if o["Id"] == default["TargetOriginId"]]
    bucket_id, bucket = page_bucket(prod)
    assert origin["DomainName"] == {"Fn::GetAtt": [bucket_id, "RegionalDomainName"]}
    access_id = origin["OriginAccessControlId"]["Fn::GetAtt"][0]
    access = prod.templates["frontdoor"]["Resources"][access_id]["Properties"]["OriginAccessControlConfig"]
    assert (access["OriginAccessControlOriginType"], access["SigningBehavior"]) == ("s3", "always")
    blocked = bucket["Properties"]["PublicAccessBlockConfiguration"]
    assert all(blocked[key] for key in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls",
                                        "RestrictPublicBuckets"))  # fmt: skip
    (policy,) = [
        p
        for p in prod.resources("frontdoor", "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    allows = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    (read,) = allows
    assert read["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert read["Action"] == "s3:GetObject"
    assert read["Condition"] == {"StringEquals": {"AWS:SourceArn": distribution_arn(prod)}}


def test_the_page_deployment_may_touch_one_archive_one_bucket_and_one_distribution(prod):
    resources = prod.templates["frontdoor"]["Resources"]
    (policy,) = [r for k, r in resources.items() if k.startswith("PageFilesPolicy")]
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert set(statements) == {
        "ReadThePageArchive",
        "ListThePageBucket",
        "WriteThePage",
        "InvalidateThisDistribution",
        "WriteOwnLogs",
    }
    bucket_id, _ = page_bucket(prod)
    bucket_arn = {"Fn::GetAtt": [bucket_id, "Arn"]}
    assert statements["ListThePageBucket"]["Action"] == "s3:ListBucket"
    assert statements["ListThePageBucket"]["Resource"] == bucket_arn
    assert sorted(statements["WriteThePage"]["Action"]) == ["s3:DeleteObject", "s3:PutObject"]
    assert statements["WriteThePage"]["Resource"] == {"Fn::Join": ["", [bucket_arn, "/*"]]}
    assert statements["ReadThePageArchive"]["Action"] == "s3:GetObject"
    assert statements["InvalidateThisDistribution"]["Resource"] == distribution_arn(prod)
    archive = json.dumps(statements["ReadThePageArchive"]["Resource"])
    assert archive.endswith('.zip"]]}') and "cdk-hnb659fds-assets-" in archive
    (deployment,) = [r for r in resources.values() if r["Type"] == "Custom::CDKBucketDeployment"]
    assert any(d.startswith("PageFilesPolicy") for d in deployment["DependsOn"])
    # Unversioned file names: browsers revalidate each file, never mixing a new page with an old script.
    assert deployment["Properties"]["SystemMetadata"] == {"cache-control": "no-cache"}
    (function,) = [
        r for k, r in resources.items() if r["Type"] == "AWS::Lambda::Function" and "BucketDeployment" in k
    ]
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    assert role_id.startswith("PageFilesRole")
    assert "ManagedPolicyArns" not in resources[role_id]["Properties"]
    assert "Policies" not in resources[role_id]["Properties"]
    # CDK's handler empties the bucket on its own deletion unless retain_on_delete: never here, so a
    # deployment replaced under a new logical id cannot delete the page its successor just wrote.
    assert deployment["Properties"].get("RetainOnDelete", True) is not False
    assert page_bucket(prod)[1]["DeletionPolicy"] == "RetainExceptOnCreate"


def test_the_page_archive_holds_the_page_and_nothing_else(prod):
    """What BucketDeployment copies: web/'s page files, not tests, caches or notes kept beside them."""
    assets = json.loads((prod.outdir / "dogbreed-prod-frontdoor.assets.json").read_text())["files"]
    resources = prod.templates["frontdoor"]["Resources"]
    (policy,) = [r for k, r in resources.items() if k.startswith("PageFilesPolicy")]
    (read,) = [
        s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Sid"] == "ReadThePageArchive"
    ]
    archive_hash = json.dumps(read["Resource"]).rsplit("/", 1)[1].split(".zip")[0]
    directory = prod.outdir / assets[archive_hash]["source"]["path"]
    files = sorted(p.name for p in directory.rglob("*") if p.is_file())
    assert "index.html" in files and "app.js" in files and "style.css" in files
    assert all(name.endswith((".html", ".css", ".js", ".svg")) for name in files), files


def test_every_response_carries_the_security_headers_make_serve_sends(prod):
    """The response headers policy, read back as the headers CloudFront sends, equals SECURITY_HEADERS,
    which the local server sends too: the browser test runs the page under production's policy."""
    config = distribution_config(prod)
    behaviours = [config["DefaultCacheBehavior"], *config["CacheBehaviors"]]
    (headers_id,) = {b["ResponseHeadersPolicyId"]["Ref"] for b in behaviours}
    policy = prod.templates["frontdoor"]["Resources"][headers_id]["Properties"]["ResponseHeadersPolicyConfig"]
    security = policy["SecurityHeadersConfig"]
    assert all(header["Override"] for header in security.values())
    hsts = security["StrictTransportSecurity"]
    sent = {
        "content-security-policy": security["ContentSecurityPolicy"]["ContentSecurityPolicy"],
        "strict-transport-security": f"max-age={hsts['AccessControlMaxAgeSec']}"
        + ("; includeSubDomains" if hsts["IncludeSubdomains"] else ""),
        "x-content-type-options": "nosniff" if "ContentTypeOptions" in security else None,
        "x-frame-options": security["FrameOptions"]["FrameOption"],
        "referrer-policy": security["ReferrerPolicy"]["ReferrerPolicy"],
    }
    assert sent == SECURITY_HEADERS
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["content-security-policy"]


def test_access_logs_go_to_a_log_bucket_of_the_front_door_with_acls_for_cloudfront(dev, prod):
    logging = distribution_config(prod)["Logging"]
    assert logging["Prefix"] == "cloudfront/"
    (log_bucket_id,) = [k for k in prod.resources("frontdoor", "AWS::S3::Bucket") if k.startswith("Logs")]
    assert logging["Bucket"] == {"Fn::GetAtt": [log_bucket_id, "RegionalDomainName"]}
    log_bucket = prod.templates["frontdoor"]["Resources"][log_bucket_id]
    assert log_bucket["Properties"]["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerPreferred"}
    ]
    assert log_bucket["DeletionPolicy"] == "RetainExceptOnCreate"
    (rule,) = log_bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == prod.config.access_log_expiration_days

    # The stage's own access-log bucket keeps ACLs disabled, with or without a front door: switching the
    # front door off never has to disable ACLs that CloudFront's grant holds.
    def access_log_ownership(synth) -> str:
        (bucket,) = [
            b for k, b in synth.resources("storage", "AWS::S3::Bucket").items() if k.startswith("AccessLogs")
        ]
        return bucket["Properties"]["OwnershipControls"]["Rules"][0]["ObjectOwnership"]

    assert access_log_ownership(prod) == access_log_ownership(dev) == "BucketOwnerEnforced"


def test_the_distribution_serves_ipv4_only_so_the_per_ip_rate_limit_holds(prod):
    assert distribution_config(prod)["IPV6Enabled"] is False


def test_the_default_domain_is_served_as_cloudfront_allows_and_an_own_domain_with_tls_1_2(
    prod, custom_domain
):
    default = distribution_config(prod)
    assert "Aliases" not in default
    assert "ViewerCertificate" not in default  # CloudFront's own *.cloudfront.net certificate
    own = distribution_config(custom_domain)
    assert own["Aliases"] == ["dogs.example.com"]
    assert own["ViewerCertificate"] == {
        "AcmCertificateArn": CERTIFICATE,
        "MinimumProtocolVersion": "TLSv1.2_2021",
        "SslSupportMethod": "sni-only",
    }
    assert custom_domain.templates["frontdoor"]["Outputs"]["Url"]["Value"] == "https://dogs.example.com"


# --- the web ACL -------------------------------------------------------------------------------------------


def test_the_distribution_uses_the_edge_stacks_web_acl_read_across_regions(prod):
    assert distribution_config(prod)["WebACLId"] == {
        "Fn::GetStackOutput": {
            "StackName": "dogbreed-prod-edge",
            "Region": "us-east-1",
            "OutputName": "WebAclArn",
        }
    }
    acl_id, _ = only(prod.resources("edge", "AWS::WAFv2::WebACL"))
    assert prod.templates["edge"]["Outputs"]["WebAclArn"]["Value"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    acl = web_acl(prod)
    assert acl["Scope"] == "CLOUDFRONT"
    assert acl["Name"] == "dogbreed-prod-front-door"
    assert acl["DefaultAction"] == {"Allow": {}}


def test_clients_over_the_rate_limit_get_the_apis_429_shape(prod, custom_domain):
    def rate_rule(synth) -> dict:
        (rule,) = [r for r in web_acl(synth)["Rules"] if "RateBasedStatement" in r["Statement"]]
        return rule

    rule = rate_rule(prod)
    assert rule["Priority"] == 0
    statement = rule["Statement"]["RateBasedStatement"]
    assert statement["Limit"] == prod.config.front_door_rate_limit == 100
    assert statement["AggregateKeyType"] == "IP"
    assert statement["EvaluationWindowSec"] == 300
    match = statement["ScopeDownStatement"]["ByteMatchStatement"]
    (api,) = distribution_config(prod)["CacheBehaviors"]
    assert (match["FieldToMatch"], match["PositionalConstraint"], match["SearchString"]) == (
        {"UriPath": {}}, "EXACTLY", api["PathPattern"]
    )  # fmt: skip
    response = rule["Action"]["Block"]["CustomResponse"]
    assert response["ResponseCode"] == 429
    body = web_acl(prod)["CustomResponseBodies"][response["CustomResponseBodyKey"]]
    assert body["ContentType"] == "APPLICATION_JSON"
    assert json.loads(body["Content"]) == RATE_LIMITED_BODY
    assert RATE_LIMITED_BODY["error"]["code"] == "rate_limited"
    assert rate_rule(custom_domain)["Statement"]["RateBasedStatement"]["Limit"] == 250


def test_managed_rule_groups_fit_an_image_upload_api(prod):
    rules = sorted(web_acl(prod)["Rules"], key=lambda r: r["Priority"])
    groups = {
        r["Statement"]["ManagedRuleGroupStatement"]["Name"]: r["Statement"]["ManagedRuleGroupStatement"]
        for r in rules
        if "ManagedRuleGroupStatement" in r["Statement"]
    }
    assert list(groups) == [
        "AWSManagedRulesAmazonIpReputationList",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "AWSManagedRulesCommonRuleSet",
    ]
    assert all(g["VendorName"] == "AWS" for g in groups.values())
    overrides = groups["AWSManagedRulesCommonRuleSet"]["RuleActionOverrides"]
    # The body rules count instead of block (an image body is no text), the size rule first of them.
    assert {o["Name"] for o in overrides} == set(BODY_RULES_COUNTED) >= {"SizeRestrictions_BODY"}
    assert all(o["ActionToUse"] == {"Count": {}} for o in overrides)
    assert "RuleActionOverrides" not in groups["AWSManagedRulesKnownBadInputsRuleSet"]
    for rule in rules:
        assert rule["VisibilityConfig"]["CloudWatchMetricsEnabled"] is True
        if "ManagedRuleGroupStatement" in rule["Statement"]:
            assert rule["OverrideAction"] == {"None": {}}


def test_waf_logs_go_to_a_kms_encrypted_log_group_of_its_own_region(prod):
    _, logging = only(prod.resources("edge", "AWS::WAFv2::LoggingConfiguration"))
    acl_id, _ = only(prod.resources("edge", "AWS::WAFv2::WebACL"))
    assert logging["Properties"]["ResourceArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    (destination,) = logging["Properties"]["LogDestinationConfigs"]
    group_id, group = only(prod.resources("edge", "AWS::Logs::LogGroup"))
    name = group["Properties"]["LogGroupName"]
    assert name == "aws-waf-logs-dogbreed-prod-front-door"  # WAF writes only to aws-waf-logs-* groups
    assert json.dumps(destination).endswith(f':log-group:", {{"Ref": "{group_id}"}}]]}}')
    key_id, _ = only(prod.resources("edge", "AWS::KMS::Key"))
    assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert group["Properties"]["RetentionInDays"] == prod.config.log_retention_days


def test_a_spike_of_blocked_requests_is_an_alarm_on_the_web_acls_metric(prod):
    (alarm,) = [
        a["Properties"]
        for a in prod.resources("edge", "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "BlockedRequests"
    ]
    assert alarm["Namespace"] == "AWS/WAFV2"
    # WAF reports a web ACL's metrics under its VisibilityConfig.MetricName.
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
        "WebACL": web_acl(prod)["VisibilityConfig"]["MetricName"],
        "Rule": "ALL",
    }
    assert (alarm["Period"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (60, 5, 3)
    # Where it goes from there: test_alarm_forwarder.py.
