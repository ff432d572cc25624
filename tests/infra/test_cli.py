"""The pinned CDK CLI runs the app from cdk.json, as a user's `npx cdk synth` does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from .conftest import EXAMPLE_MODEL_URL, REPO_ROOT

CDK = REPO_ROOT / "node_modules" / ".bin" / "cdk"
pytestmark = pytest.mark.skipif(not CDK.exists() or not shutil.which("node"), reason="run `make setup` first")


def cdk(*args: str, outdir) -> subprocess.CompletedProcess:
    # Without credentials the CLI still synthesizes: the stacks are environment-agnostic.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    return subprocess.run(  # noqa: S603 (fixed argv: the repo's pinned CLI and literal arguments)
        [str(CDK), *args, "-o", str(outdir)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_npx_cdk_synth_prod_passes_the_gate(tmp_path):
    result = cdk(
        "synth", "--quiet", "-c", "stage=prod", "-c", f"model_data_url={EXAMPLE_MODEL_URL}", outdir=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    names = sorted(p.name for p in tmp_path.glob("*.template.json"))
    assert names == [
        f"dogbreed-prod-{kind}.template.json" for kind in ("api", "serving", "storage", "training")
    ]
    report = json.loads((tmp_path / "validation-report.json").read_text())
    assert report["pluginReports"] == []


def test_npx_cdk_synth_reports_a_bad_value_in_one_line(tmp_path):
    result = cdk(
        "synth", "--quiet", "-c", "stage=prod", "-c", "model_data_url=s3://bucket/model.zip", outdir=tmp_path
    )
    assert result.returncode != 0
    assert (
        "config error: model_data_url: must be an s3://BUCKET/KEY.tar.gz URL (got 's3://bucket/model.zip')"
        in (result.stderr)
    )
    assert "Traceback" not in result.stderr
    assert "jsii" not in result.stderr.lower()
