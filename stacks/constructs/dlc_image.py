"""AWS Deep Learning Container images, resolved per region without hard-coding one account."""

from __future__ import annotations

from aws_cdk import Aws, CfnMapping, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

# The ECR account that publishes the Deep Learning Containers in each commercial region
# (https://github.com/aws/deep-learning-containers/blob/master/available_images.md, "Region availability";
# the same table as sagemaker-python-sdk's image_uri_config). Most regions use 763104351884; opt-in
# regions have their own account. A region missing here fails the deploy at Fn::FindInMap, not silently.
DLC_ACCOUNTS: dict[str, str] = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-northeast-1": "763104351884",
    "ap-northeast-2": "763104351884",
    "ap-northeast-3": "364406365360",
    "ap-south-1": "763104351884",
    "ap-south-2": "772153158452",
    "ap-southeast-1": "763104351884",
    "ap-southeast-2": "763104351884",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ca-central-1": "763104351884",
    "ca-west-1": "204538143572",
    "eu-central-1": "763104351884",
    "eu-central-2": "380420809688",
    "eu-north-1": "763104351884",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "eu-west-1": "763104351884",
    "eu-west-2": "763104351884",
    "eu-west-3": "763104351884",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "sa-east-1": "763104351884",
    "us-east-1": "763104351884",
    "us-east-2": "763104351884",
    "us-west-1": "763104351884",
    "us-west-2": "763104351884",
}

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
