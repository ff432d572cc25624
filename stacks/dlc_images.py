"""Where the AWS Deep Learning Containers live in each region: plain Python for tools that run without CDK.

``stacks.constructs.dlc_image`` resolves the same table in a template (a CfnMapping, so one synthesized
template is right in any region); ``training.register`` names the image of a model package for a region
it knows. One table, ``dlc_accounts.json``, generated from the SageMaker SDK (``python -m
scripts.dlc_accounts``).
"""

from __future__ import annotations

import json
from pathlib import Path

# The ECR account that publishes the Deep Learning Containers in each region of the partitions the app
# targets, generated from the SageMaker SDK's own table (image_uri_config/pytorch.json, the images cdk.json
# names); tests/infra/test_dlc_accounts.py fails when it is stale. A data file, so synth never imports the
# SDK. A region missing here fails the deploy at Fn::FindInMap, not silently.
DLC_ACCOUNTS_FILE = Path(__file__).resolve().parent / "constructs" / "dlc_accounts.json"
DLC_ACCOUNTS: dict[str, str] = json.loads(DLC_ACCOUNTS_FILE.read_text())["accounts"]


# The DLC repositories the stage uses: the Model's (and every registered package's) and the training jobs'.
INFERENCE_REPOSITORY = "pytorch-inference"
TRAINING_REPOSITORY = "pytorch-training"


class UnknownRegion(ValueError):
    """No Deep Learning Container account is known for the region."""


def url_suffix(region: str) -> str:
    """The domain suffix of the region's partition (Aws.URL_SUFFIX in a template)."""
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


def image_uri(repository: str, tag: str, region: str) -> str:
    """``<account>.dkr.ecr.<region>.<suffix>/<repository>:<tag>``, as the stacks resolve it."""
    account = DLC_ACCOUNTS.get(region)
    if account is None:
        raise UnknownRegion(f"no Deep Learning Containers account is known for region {region!r}")
    return f"{account}.dkr.ecr.{region}.{url_suffix(region)}/{repository}:{tag}"
