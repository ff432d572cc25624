"""The pinned CDK CLI runs the app from cdk.json, as a user's `npx cdk synth` does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from .conftest import EXAMPLE_ALARM_EMAIL, REPO_ROOT

# A package ARN names its own region and account; neither is the CLI's (asserted absent below).
PROD_PACKAGE = "arn:aws:sagemaker:ap-south-2:210987654321:model-package/dogbreed-prod/2"

CDK = REPO_ROOT / "node_modules" / ".bin" / "cdk"
pytestmark = pytest.mark.skipif(not CDK.exists() or not shutil.which("node"), reason="run `make setup` first")


def cdk(*args: str, outdir, **environment: str) -> subprocess.CompletedProcess:
    # Without credentials the CLI still synthesizes: the stacks are environment-agnostic.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    env.update(environment)
    return subprocess.run(  # noqa: S603 (fixed argv: the repo's pinned CLI and literal arguments)
        [str(CDK), *args, "-o", str(outdir)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_npx_cdk_synth_prod_passes_the_gate_and_pins_no_region(tmp_path):
    """With credentials the CLI hands the app an account and region (CDK_DEFAULT_*). The assembly must not
    take them: a template that names eu-west-1 would be wrong when the same assembly deploys elsewhere."""
    result = cdk(
        "synth",
        "--quiet",
        "-c",
        "stage=prod",
        "-c",
        f"model_package_arn={PROD_PACKAGE}",
        "-c",
        f"alarm_email={EXAMPLE_ALARM_EMAIL}",
        outdir=tmp_path,
        CDK_DEFAULT_ACCOUNT="123456789012",
        CDK_DEFAULT_REGION="eu-west-1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    names = sorted(p.name for p in tmp_path.glob("*.template.json"))
    assert names == [
        f"dogbreed-prod-{kind}.template.json"
        for kind in ("api", "edge", "frontdoor", "serving", "storage", "training")
    ]
    report = json.loads((tmp_path / "validation-report.json").read_text())
    assert report["pluginReports"] == []
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    environments = {name: a["environment"] for name, a in manifest["artifacts"].items() if "environment" in a}
    # CloudFront's web ACL exists only in us-east-1: the edge stack names that region, whatever the CLI's.
    assert environments.pop("dogbreed-prod-edge") == "aws://unknown-account/us-east-1"
    assert set(environments.values()) == {"aws://unknown-account/unknown-region"}
    for template in tmp_path.glob("*.template.json"):
        body = json.loads(template.read_text())
        # Mappings and Conditions list every region (the DLC accounts) by design; resources must name none
        # but the edge stack's, whose outputs the front door reads and whose topic it subscribes to.
        deployed = json.dumps([body.get("Resources"), body.get("Outputs")])
        edge_region = '"Region": "us-east-1"'
        if template.name != "dogbreed-prod-edge.template.json":
            assert deployed.count("us-east-1") == deployed.count(edge_region), template.name
        assert "eu-west-1" not in deployed, template.name
        assert "123456789012" not in deployed, template.name


def test_npx_cdk_synth_stops_a_production_stage_whose_alarms_reach_nobody(tmp_path):
    result = cdk(
        "synth", "--quiet", "-c", "stage=prod", "-c", f"model_package_arn={PROD_PACKAGE}", outdir=tmp_path
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("config error:")]
    assert len(errors) == 1
    assert errors[0].startswith(
        "config error: dogbreed:stages.prod.alarm_email: a production stage must send"
    )
    assert "Traceback" not in result.stderr


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
