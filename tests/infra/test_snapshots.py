"""One snapshot per stack per stage. Update after an intended change with `make snapshot-update`.

The Lambda asset (its S3 key and the hash in the version's logical id) is masked, so editing lambda/
does not churn the snapshots; everything else is compared exactly.
"""

from __future__ import annotations

import json
import re

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from .conftest import STAGE_STACK_KINDS

# Lambda::Version logical ids embed a hash of the function's configuration and code.
_VERSION_ID = re.compile(r"(CurrentVersion[0-9A-F]{8})[0-9a-f]{32}")
_ASSET_ZIP = re.compile(r"\b[0-9a-f]{64}\.zip\b")
_ASSET_DIR = re.compile(r"\basset\.[0-9a-f]{64}\b")


def masked(template: dict) -> dict:
    text = json.dumps(template, sort_keys=True)
    text = _VERSION_ID.sub(r"\1<code-hash>", text)
    text = _ASSET_ZIP.sub("<asset-hash>.zip", text)
    text = _ASSET_DIR.sub("asset.<asset-hash>", text)
    return json.loads(text)


@pytest.fixture
def snapshot_json(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize(
    ("stage", "kind"), [(stage, kind) for stage, kinds in STAGE_STACK_KINDS.items() for kind in kinds]
)
def test_stack_matches_snapshot(stages, stage, kind, snapshot_json):
    assert masked(stages[stage].templates[kind]) == snapshot_json


def test_each_stage_has_the_stacks_its_config_asks_for(stages):
    assert {stage: tuple(synth.templates) for stage, synth in stages.items()} == STAGE_STACK_KINDS


def test_masking_hides_only_the_asset_hash():
    template = {
        "Resources": {
            "FnCurrentVersion1234ABCD0123456789abcdef0123456789abcdef": {"Type": "AWS::Lambda::Version"},
            "Fn": {"Properties": {"Code": {"S3Key": f"{'a' * 64}.zip"}, "Timeout": 45}},
        }
    }
    assert masked(template) == {
        "Resources": {
            "FnCurrentVersion1234ABCD<code-hash>": {"Type": "AWS::Lambda::Version"},
            "Fn": {"Properties": {"Code": {"S3Key": "<asset-hash>.zip"}, "Timeout": 45}},
        }
    }
