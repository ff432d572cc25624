"""AWS Deep Learning Container images, resolved per region without hard-coding one account."""

from __future__ import annotations

from aws_cdk import Aws, CfnMapping, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.dlc_images import DLC_ACCOUNTS

# ecr:GetAuthorizationToken has no resource-level permissions: it must be granted on "*"
# (https://docs.aws.amazon.com/AmazonECR/latest/userguide/security_iam_service-with-iam.html).
ECR_AUTH_REASON = "ecr:GetAuthorizationToken does not support resource-level permissions; AWS requires '*'."
ECR_PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")


def _dlc_mapping(stack: Stack) -> CfnMapping:
    """One CfnMapping per stack, shared by every image in it."""
    existing = stack.node.try_find_child("DlcAccounts")
    if existing is not None:
        return existing
    return CfnMapping(
        stack,
        "DlcAccounts",
        mapping={region: {"account": account} for region, account in sorted(DLC_ACCOUNTS.items())},
    )


class DlcImage(Construct):
    """One DLC repository and tag (``pytorch-training:2.6.0-gpu-py312``) in the deploying region.

    Exposes ``image_uri`` and ``repository_arn`` and grants a role the right to pull exactly this
    repository (plus the account-wide auth token ECR requires).
    """

    def __init__(self, scope: Construct, construct_id: str, *, repository: str, tag: str) -> None:
        super().__init__(scope, construct_id)
        account = _dlc_mapping(Stack.of(self)).find_in_map(Aws.REGION, "account")
        self.repository = repository
        self.tag = tag
        self.image_uri = f"{account}.dkr.ecr.{Aws.REGION}.{Aws.URL_SUFFIX}/{repository}:{tag}"
        self.repository_arn = f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:{account}:repository/{repository}"

    def pull_statements(self) -> list[iam.PolicyStatement]:
        return [
            iam.PolicyStatement(
                sid="PullImage", actions=list(ECR_PULL_ACTIONS), resources=[self.repository_arn]
            ),
            iam.PolicyStatement(sid="EcrAuthToken", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
        ]
