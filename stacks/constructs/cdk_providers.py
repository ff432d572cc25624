"""The Lambda function CDK itself adds as BucketDeployment's deploy-time provider: its code and runtime are
CDK's, pinned with aws-cdk-lib, and CloudFormation invokes it once per deploy of its resource.
Its cdk-nag findings are acknowledged on the provider itself with the reason each does not apply, never on
a whole stack; its role is the project's own (stacks/constructs/front_door.py, PageDeployment)."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import Construct

# CloudFormation invokes a custom resource's function asynchronously, with a callback URL
# (https://docs.aws.amazon.com/lambda/latest/dg/services-cloudformation.html), and CDK's handler answers it
# on every outcome (FAILED with the reason on an error).
ANSWERED = "CloudFormation's only invocation: CDK's handler answers its callback on every outcome"
PROVIDER_FINDINGS = {
    "AwsSolutions-L1": "The provider's runtime is chosen by the pinned aws-cdk-lib and moves with it.",
    "Serverless-LambdaLatestVersion": "The provider's runtime is chosen by the pinned aws-cdk-lib.",
    "NIST.800.53.R5-LambdaDLQ": f"{ANSWERED}, so the stack event is the failure record.",
    "Serverless-LambdaDLQ": f"{ANSWERED}; a queued event would be a deploy nobody can answer.",
    "Serverless-LambdaAsyncFailureDestination": f"{ANSWERED}; the stack event records a failure.",
    "NIST.800.53.R5-LambdaInsideVPC": "The provider calls only AWS APIs, over TLS, with SigV4.",
    "NIST.800.53.R5-LambdaConcurrency": "The provider runs once per deploy of its resource.",
    "Serverless-LambdaTracing": "A deploy-time provider: its logs and the stack events tell its story.",
}


def acknowledge_cdk_provider(function: Construct, provider: str) -> None:
    """Acknowledge ``PROVIDER_FINDINGS`` on ``function``, the provider of ``provider`` (a CDK construct's
    name, which the reasons cite); and drop its DependsOn on its role, which the Role GetAtt already
    orders (cfn-lint W3005)."""
    Validations.of(function).acknowledge(
        *(
            Acknowledgment(id=rule, reason=f"{provider}: {reason}")
            for rule, reason in PROVIDER_FINDINGS.items()
        )
    )
    function.node.default_child.add_deletion_override("DependsOn")
