"""The front door's distribution: the web page from a private bucket, the prediction API from the ``live``
alias's Function URL, both through origin access controls, behind the stage's WAF web ACL.

The Function URL keeps ``AWS_IAM`` auth: CloudFront signs every request it forwards with SigV4 (a Lambda
origin access control), and the function's resource policy lets only this distribution invoke it
(https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/private-content-restricting-access-to-lambda.html).
CloudFront does not hash a POST body for that signature: the caller sends ``x-amz-content-sha256`` (the
page computes it; docs/infrastructure.md, "Front door").
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, Aws, CfnRule, CfnRuleAssertion, Duration, Fn, Stack, Validations
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from stacks.config import OPT_IN_REGIONS, ORIGIN_READ_MARGIN_SECONDS
from stacks.constructs.cdk_providers import acknowledge_cdk_provider
from stacks.constructs.log_bucket import log_destination_bucket
from stacks.constructs.log_group import function_role
from stacks.constructs.removal_policy import RETAIN_EXCEPT_ON_CREATE
from stacks.security_headers import CONTENT_SECURITY_POLICY, HSTS_MAX_AGE_SECONDS

# The one path CloudFront forwards to the prediction API; WAF's rate limit counts the same path.
API_PATH = "/api/predict"
DISTRIBUTION_LOG_PREFIX = "cloudfront/"


def default_region_rule(scope: Construct, construct_id: str) -> CfnRule:
    """Stops a deploy to an opt-in region before it starts: SNS delivers from us-east-1 to Lambda (the
    front door's alarm forwarder) only in regions enabled by default, and CloudFront's standard logs reach
    no bucket in some opt-in regions. A rule of ``scope``, the front door stack."""
    return CfnRule(
        scope,
        construct_id,
        assertions=[
            CfnRuleAssertion(
                assert_=Fn.condition_not(Fn.condition_contains(list(OPT_IN_REGIONS), Aws.REGION)),
                assert_description="The front door needs a region enabled by default (SNS delivers "
                "its us-east-1 alarms to Lambda only there): set front_door_enabled false for a stage in "
                "an opt-in region",
            )
        ],
    )


class PageBucket(Construct):
    """The web page's private bucket: no public access, TLS only, read by the distribution alone."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            # SSE-S3: a KMS-encrypted origin needs the distribution in the key's policy, and the project
            # key (storage stack, deployed first) cannot name a distribution created after it. The page
            # is public content anyway; what protects it is that only the distribution can read it.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            # Kept when the stack is deleted (a few KB of page, delete it by hand), but removed when the
            # first create rolls back. The page deployment never empties the bucket: CDK's handler would
            # only do that on its own deletion, and a deployment whose logical id changed would then
            # delete the page the new one had just written (PageDeployment keeps retain_on_delete).
            removal_policy=RETAIN_EXCEPT_ON_CREATE,
        )
        reason = "The bucket holds only the web page, deployed from web/ in git on every deploy"
        # Every read of the bucket is an origin fetch of the distribution, whose standard logs record
        # each viewer request. Server access logs would need the access-log bucket's policy to admit
        # this bucket, which CDK writes without a source condition across stacks (any bucket could then
        # log into that prefix).
        logged = "Its only reader is the distribution, whose standard logs record every viewer request"
        Validations.of(self.bucket).acknowledge(
            Acknowledgment(id="AwsSolutions-S1", reason=f"{logged}; S3 access logs would repeat them."),
            Acknowledgment(id="NIST.800.53.R5-S3BucketLoggingEnabled", reason=f"{logged}."),
            Acknowledgment(
                id="NIST.800.53.R5-S3BucketVersioningEnabled", reason=f"{reason}: git versions it."
            ),
            Acknowledgment(
                id="NIST.800.53.R5-S3BucketReplicationEnabled", reason=f"{reason}: git is the copy."
            ),
            Acknowledgment(
                id="NIST.800.53.R5-S3DefaultEncryptionKMS",
                reason=f"{reason}; a KMS-encrypted origin would need the distribution in the project key's "
                "policy, which the storage stack (deployed first) cannot name.",
            ),
        )


class DistributionLogBucket(Construct):
    """The distribution's standard logs: a bucket of the front door's own, because they arrive through an
    ACL grant to CloudFront's log delivery account, which a bucket with ACLs disabled refuses ("The S3
    bucket that you specified for CloudFront logs does not enable ACL access";
    https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/standard-logging-legacy-s3.html).
    The stage's access-log bucket keeps ACLs disabled: enabling them there, and disabling them again
    when the front door goes, would fail (S3 refuses BucketOwnerEnforced while an ACL grants another
    account)."""

    def __init__(self, scope: Construct, construct_id: str, *, expiration_days: int) -> None:
        super().__init__(scope, construct_id)
        self.bucket = log_destination_bucket(
            self,
            "Bucket",
            of="distribution's",
            rule_id="expire-distribution-logs",
            expiration_days=expiration_days,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            encryption_reason="CloudFront's standard logs go to SSE-S3 buckets; SSE-KMS would need the log "
            "delivery account in the key's policy.",
        )


class FrontDoorDistribution(Construct):
    """The distribution, its security headers policy and the two origin access controls."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        page_bucket: s3.IBucket,
        api_host: str,
        api_function_arn: str,
        web_acl_arn: str,
        log_bucket: s3.IBucket,
        api_timeout_seconds: int,
        domain_name: str,
        certificate_arn: str,
        description: str,
    ) -> None:
        super().__init__(scope, construct_id)
        headers = cloudfront.ResponseHeadersPolicy(
            self,
            "SecurityHeaders",
            comment=f"{description}: HSTS, CSP, nosniff, no framing, same-origin referrer",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=Duration.seconds(HSTS_MAX_AGE_SECONDS),
                    include_subdomains=True,
                    override=True,
                ),
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=CONTENT_SECURITY_POLICY, override=True
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.SAME_ORIGIN, override=True
                ),
            ),
        )
        api_access = cloudfront.FunctionUrlOriginAccessControl(
            self, "ApiAccess", signing=cloudfront.Signing.SIGV4_ALWAYS, description=f"{description}: SigV4"
        )
        api = cloudfront.BehaviorOptions(
            origin=origins.HttpOrigin(
                api_host,
                origin_access_control_id=api_access.origin_access_control_id,
                protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
                # The handler answers every failure itself within its own timeout; CloudFront must wait
                # that long, or the caller gets CloudFront's 504 page instead of the handler's answer.
                # (config refuses a Lambda timeout CloudFront cannot wait for).
                read_timeout=Duration.seconds(api_timeout_seconds + ORIGIN_READ_MARGIN_SECONDS),
            ),
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
            allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
            cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
            # Every viewer header but Host (the Function URL checks the signature against its own host),
            # the query string (top_k) and the body; x-amz-content-sha256 among the headers.
            origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
            response_headers_policy=headers,
            compress=False,
        )
        custom_domain = bool(domain_name)
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=description,
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(page_bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                # The page's paths take no body: GET and HEAD only, so only the API receives uploads.
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=headers,
            ),
            additional_behaviors={API_PATH: api},
            web_acl_id=web_acl_arn,
            # North America and Europe edges: the cheapest class; other viewers reach the nearest of them.
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            # IPv4 only: WAF's rate limit counts per client address, and an IPv6 client holds a /64 of
            # them (2^64 addresses to rotate through); dual-stack clients reach the distribution over IPv4.
            enable_ipv6=False,
            domain_names=[domain_name] if custom_domain else None,
            certificate=acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn)
            if custom_domain
            else None,
            # Settable only with an own certificate: *.cloudfront.net is served with TLSv1 as its lowest
            # version (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/secure-connections-supported-viewer-protocols-ciphers.html).
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021
            if custom_domain
            else None,
            enable_logging=True,
            log_bucket=log_bucket,
            log_file_prefix=DISTRIBUTION_LOG_PREFIX,
        )
        Validations.of(self.distribution).acknowledge(
            Acknowledgment(
                id="AwsSolutions-CFR1",
                reason="The classifier is for anyone: no country is excluded; WAF's IP reputation list and "
                "rate limit handle abuse.",
            ),
        )
        if not custom_domain:
            Validations.of(self.distribution).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-CFR4",
                    reason="Without front_door_domain_name the distribution serves *.cloudfront.net, whose "
                    "certificate CloudFront serves with the TLSv1 policy and no other; set "
                    "front_door_domain_name and front_door_certificate_arn for TLSv1.2_2021.",
                ),
            )
        self._allow_only_this_distribution(api_function_arn)
        self.url = f"https://{domain_name or self.distribution.distribution_domain_name}"

    def _allow_only_this_distribution(self, api_function_arn: str) -> None:
        """The function's resource policy: this distribution, and nothing else, may call the URL.

        Two statements: lambda:InvokeFunctionUrl, and lambda:InvokeFunction limited to calls through a
        function URL, which URLs created since October 2025 need as well
        (https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html). ``api_function_arn`` is the
        alias's qualified ARN: the URL belongs to the alias (Qualifier live), and a statement on the
        unqualified function would not cover it.
        """
        source_arn = Stack.of(self).format_arn(
            service="cloudfront",
            region="",
            resource="distribution",
            resource_name=self.distribution.distribution_id,
        )
        for construct_id, action, via_url in (
            ("InvokeUrlFromThisDistribution", "lambda:InvokeFunctionUrl", None),
            ("InvokeFunctionFromThisDistribution", "lambda:InvokeFunction", True),
        ):
            lambda_.CfnPermission(
                self,
                construct_id,
                action=action,
                function_name=api_function_arn,
                principal="cloudfront.amazonaws.com",
                source_arn=source_arn,
                function_url_auth_type="AWS_IAM" if via_url is None else None,
                invoked_via_function_url=via_url,
            )


class PageDeployment(Construct):
    """Copies the page's files into its bucket on every deploy and drops the edges' cached copies.

    CDK's BucketDeployment does the copy, with a role of this construct's making: CDK's own grants would
    give it wildcard actions (s3:GetObject*, s3:List*, s3:DeleteObject*) and CloudFront invalidations on
    every distribution, where it needs the one archive, the one bucket and the one distribution. The role
    is immutable, so those grants are dropped, and the policy below is all it may do.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source_dir: Path,
        files: tuple[str, ...],
        bucket: s3.IBucket,
        distribution: cloudfront.IDistribution,
        log_group: logs.ILogGroup,
        description: str,
    ) -> None:
        super().__init__(scope, construct_id)
        archive = s3_assets.Asset(
            self, "Archive", path=str(source_dir), exclude=["*", *(f"!{pattern}" for pattern in files)]
        )
        role, policy = function_role(
            self,
            description=description,
            log_group=log_group,
            statements=[
                iam.PolicyStatement(
                    sid="ReadThePageArchive",
                    actions=["s3:GetObject"],
                    resources=[archive.bucket.arn_for_objects(archive.s3_object_key)],
                ),
                # `aws s3 sync --delete`: list what is there, write the new files, delete the old ones.
                iam.PolicyStatement(
                    sid="ListThePageBucket", actions=["s3:ListBucket"], resources=[bucket.bucket_arn]
                ),
                iam.PolicyStatement(
                    sid="WriteThePage",
                    actions=["s3:PutObject", "s3:DeleteObject"],
                    resources=[bucket.arn_for_objects("*")],
                ),
                iam.PolicyStatement(
                    sid="InvalidateThisDistribution",
                    actions=["cloudfront:CreateInvalidation", "cloudfront:GetInvalidation"],
                    resources=[distribution.distribution_arn],
                ),
            ],
        )
        bucket_id = Stack.of(self).get_logical_id(bucket.node.default_child)
        Validations.of(policy).acknowledge(
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/*]",
                reason="The page is every object of its own bucket: sync writes and prunes what web/ holds.",
            )
        )
        deployment = s3deploy.BucketDeployment(
            self,
            "Deployment",
            sources=[s3deploy.Source.bucket(archive.bucket, archive.s3_object_key)],
            destination_bucket=bucket,
            # A new page is live at once: the edges drop their cached copies of the old one.
            distribution=distribution,
            distribution_paths=["/*"],
            role=role,
            log_group=log_group,
            # The file names carry no version: a browser revalidates each file (a 304 when unchanged), so
            # it never runs a new index.html with an old app.js after a deploy. `make serve` sends the same.
            cache_control=[s3deploy.CacheControl.no_cache()],
        )
        # The copy runs as soon as the function exists; the role must already hold its policy.
        deployment.node.add_dependency(policy)
        provider = next(
            child
            for child in Stack.of(self).node.children
            if child.node.id.startswith("Custom::CDKBucketDeployment")
        )
        acknowledge_cdk_provider(provider, "BucketDeployment")
