"""cdk.json's scaling and sizing values are the ones `make bench` derived (docs/benchmarks.json),
to within config_sync's tolerance.

When a new benchmark run changes a derived value, this fails and names the key: run
`python -m bench.config_sync --write` and review the cdk.json diff (or keep the old run's files).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import config_sync, decisions

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = json.loads((REPO_ROOT / "docs" / "benchmarks.json").read_text())
CONTEXT = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]


def stage_config(stage: str) -> dict:
    return {**CONTEXT["dogbreed:defaults"], **CONTEXT["dogbreed:stages"][stage]}


@pytest.mark.parametrize("stage", ["dev", "prod"])
@pytest.mark.parametrize("key", decisions.CONFIG_KEYS)
def test_cdk_json_holds_the_benchmark_derived_value(stage, key):
    derived = BENCHMARKS["stages"][stage][key]
    assert config_sync.in_sync(stage_config(stage)[key], derived), (
        f"cdk.json {stage}.{key} is {stage_config(stage)[key]!r}, docs/benchmarks.json derives {derived!r} "
        f"(more than {config_sync.TOLERANCE:.0%} apart): run python -m bench.config_sync --write"
    )


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_inference_image_matches_the_derived_instance_kind(stage):
    kind = BENCHMARKS["stages"][stage]["inference_image_kind"]
    assert f"-{kind}-" in stage_config(stage)["inference_image_tag"]


def test_the_saved_decisions_are_what_the_saved_measurements_give():
    """docs/benchmarks.json was rendered by the current rules: nobody edited a derived value by hand."""
    recomputed = decisions.derive(BENCHMARKS["results"])["stages"]
    for stage in ("dev", "prod"):
        saved = BENCHMARKS["stages"][stage]
        assert decisions.config_values(recomputed[stage]) == decisions.config_values(saved)
