"""`make promote`: a registered, approved model package becomes one reviewed line of cdk.json.

Real botocore clients with botocore's Stubber: every request is validated against the SageMaker service
model, and every queued answer must have been asked for. Each test promotes into a copy of the real
cdk.json and compares what it holds afterwards.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from stacks.config import ConfigError, load_stage_config
from stacks.promote import main

from .conftest import REPO_ROOT, stage_context

PACKAGE_REGION = "us-east-1"
SESSION_REGION = "eu-west-1"  # the session's own region: promote must ask the package's region instead
ACCOUNT = "111122223333"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
METADATA = {
    "arch": "resnet50",
    "test_acc1": "0.9127",
    "training_job": "dogbreed-prod-2026-12-01-10-00-00",
    "git_commit": "4f2c1e9",
}
DENIED = f"User: arn:aws:iam::{ACCOUNT}:user/dev is not authorized to perform: sagemaker:DescribeModelPackage"
# Stubbed clients still sign their requests, so the session needs some (never used) keys.
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def package_arn(stage: str, version: int, group: str | None = None) -> str:
    group = group or f"dogbreed-{stage}"
    return f"arn:aws:sagemaker:{PACKAGE_REGION}:{ACCOUNT}:model-package/{group}/{version}"


PROD_3, PROD_4, DEV_7 = package_arn("prod", 3), package_arn("prod", 4), package_arn("dev", 7)


class Account:
    """One stubbed account: the SageMaker client promote asks its session for, answering from a queue."""

    def __init__(self) -> None:
        self.session = boto3.Session(region_name=SESSION_REGION, **KEYS)
        self.sagemaker = self.session.client("sagemaker", region_name=PACKAGE_REGION)
        self.stub = Stubber(self.sagemaker)
        self.stub.activate()
        self.regions_asked: list[str | None] = []
        self.session.client = self._client  # promote builds its client from the session it is given

    def _client(self, service_name: str, region_name: str | None = None, **_: Any) -> Any:
        assert service_name == "sagemaker"
        self.regions_asked.append(region_name)
        return self.sagemaker

    def package(
        self, arn: str, approval: str = "Approved", status: str = "Completed", metadata: dict | None = None
    ) -> Account:
        group, version = arn.split("/")[-2:]
        answer = {"ModelPackageName": group, "ModelPackageGroupName": group,
                  "ModelPackageVersion": int(version), "ModelPackageArn": arn, "CreationTime": NOW,
                  "ModelPackageStatus": status, "ModelPackageStatusDetails": {"ValidationStatuses": []},
                  "ModelApprovalStatus": approval,
                  "CustomerMetadataProperties": METADATA if metadata is None else metadata}  # fmt: skip
        self.stub.add_response("describe_model_package", answer, {"ModelPackageName": arn})
        return self

    def refuses(self, code: str, message: str, status: int = 400) -> Account:
        self.stub.add_client_error(
            "describe_model_package",
            service_error_code=code,
            service_message=message,
            http_status_code=status,
        )
        return self

    def promote(self, *argv: str, cdk_json: Path, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
        code = main(list(argv), session=self.session, cdk_json=cdk_json)
        self.stub.assert_no_pending_responses()
        out, err = capsys.readouterr()
        return code, out, err


@pytest.fixture
def account() -> Account:
    return Account()


@pytest.fixture
def cdk_json(tmp_path) -> Path:
    path = tmp_path / "cdk.json"
    shutil.copy(REPO_ROOT / "cdk.json", path)
    return path


def with_package(text: str, stage: str, arn: str) -> dict:
    """cdk.json's content with the stage naming ``arn``, and nothing else changed."""
    data = copy.deepcopy(json.loads(text))
    data["context"]["dogbreed:stages"][stage]["model_package_arn"] = arn
    return data


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """The lines a `git diff` would show as added and removed, stripped of indentation and a final comma."""
    diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))[2:]
    added = [line[1:].strip().rstrip(",") for line in diff if line.startswith("+")]
    removed = [line[1:].strip().rstrip(",") for line in diff if line.startswith("-")]
    return added, removed


def config_message(stage: str, arn: str) -> str:
    """What `cdk synth -c stage=STAGE` says about cdk.json naming ``arn`` for the stage."""
    context = stage_context(stage, model_data_url=None, model_package_arn=arn)
    with pytest.raises(ConfigError) as raised:
        load_stage_config(context.get)
    return str(raised.value)


# --- the package decides ---------------------------------------------------------------------------------


def test_an_approved_package_becomes_the_stages_one_line_of_cdk_json(account, cdk_json, capsys):
    before = cdk_json.read_text()
    account.package(PROD_3)

    code, out, err = account.promote("--stage", "prod", "--package", PROD_3, cdk_json=cdk_json, capsys=capsys)

    assert (code, err) == (0, "")
    after = cdk_json.read_text()
    assert json.loads(after) == with_package(before, "prod", PROD_3)
    added, removed = changed_lines(before, after)
    assert added == [f'"model_package_arn": "{PROD_3}"']
    assert removed in ([], ['"model_package_arn": ""'])  # a new line, or the one that named no package
    # The person promoting sees what they promote, and what happens next.
    assert "dogbreed-prod version 3: Approved, Completed" in out
    assert all(f"{key}={value}" in out for key, value in METADATA.items())
    assert f'cdk.json: dogbreed:stages.prod.model_package_arn: "" -> {PROD_3}\n' in out
    assert "git diff cdk.json" in out
    assert "npx cdk diff -c stage=prod -c alarm_email=ADDRESS dogbreed-prod-serving" in out
    assert "Model and EndpointConfig replaced and the Endpoint updated in place" in out
    assert account.regions_asked == [PACKAGE_REGION]


def test_the_next_promotion_changes_that_same_line(account, cdk_json, capsys):
    account.package(PROD_3).promote("--stage", "prod", "--package", PROD_3, cdk_json=cdk_json, capsys=capsys)
    before = cdk_json.read_text()
    account.package(PROD_4)

    code, out, _ = account.promote("--stage", "prod", "--package", PROD_4, cdk_json=cdk_json, capsys=capsys)

    assert code == 0
    assert changed_lines(before, cdk_json.read_text()) == (
        [f'"model_package_arn": "{PROD_4}"'],
        [f'"model_package_arn": "{PROD_3}"'],
    )
    assert f"cdk.json: dogbreed:stages.prod.model_package_arn: {PROD_3} -> {PROD_4}\n" in out


def test_promoting_the_package_already_named_leaves_the_file_alone(account, cdk_json, capsys):
    account.package(PROD_3).promote("--stage", "prod", "--package", PROD_3, cdk_json=cdk_json, capsys=capsys)
    before, inode = cdk_json.read_bytes(), cdk_json.stat().st_ino
    # The package is still described: one that was approved and is Rejected now is refused, not kept quietly.
    account.package(PROD_3)

    code, out, err = account.promote("--stage", "prod", "--package", PROD_3, cdk_json=cdk_json, capsys=capsys)

    assert (code, err) == (0, "")
    assert f"dogbreed:stages.prod.model_package_arn is already {PROD_3}: nothing to change" in out
    assert cdk_json.read_bytes() == before
    assert cdk_json.stat().st_ino == inode  # not even rewritten with the same bytes


def test_a_pending_package_is_refused_for_production_with_the_command_that_approves_it(
    account, cdk_json, capsys
):
    before = cdk_json.read_bytes()
    account.package(PROD_3, approval="PendingManualApproval")

    code, out, err = account.promote("--stage", "prod", "--package", PROD_3, cdk_json=cdk_json, capsys=capsys)

    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert err.startswith("REFUSED")
    assert "a production stage serves only Approved packages" in err
    assert (
        f"aws sagemaker update-model-package --model-package-arn {PROD_3} --model-approval-status Approved "
        f"--region {PACKAGE_REGION}"
    ) in err
    assert cdk_json.read_bytes() == before


def test_a_non_production_stage_may_serve_a_pending_package_and_says_so(account, cdk_json, capsys):
    before = cdk_json.read_text()
    account.package(DEV_7, approval="PendingManualApproval")

    code, out, err = account.promote("--stage", "dev", "--package", DEV_7, cdk_json=cdk_json, capsys=capsys)

    assert (code, err) == (0, "")
    assert json.loads(cdk_json.read_text()) == with_package(before, "dev", DEV_7)
    assert "dogbreed-dev version 7: PendingManualApproval, Completed" in out
    assert "still pending: dev is not a production stage, so it may serve it" in out
    assert "update-model-package" in out
    assert "-c alarm_email" not in out  # a non-production stage needs no alarm destination


@pytest.mark.parametrize(("stage", "arn"), [("dev", DEV_7), ("prod", PROD_3)], ids=["dev", "prod"])
def test_a_rejected_package_is_refused_for_every_stage(account, cdk_json, capsys, stage, arn):
    before = cdk_json.read_bytes()
    account.package(arn, approval="Rejected")

    code, out, err = account.promote("--stage", stage, "--package", arn, cdk_json=cdk_json, capsys=capsys)

    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert "Rejected" in err and "no stage serves a package that is not Approved" in err
    assert cdk_json.read_bytes() == before


@pytest.mark.parametrize("status", ["InProgress", "Failed"])
def test_an_approved_package_sagemaker_has_not_completed_is_refused(account, cdk_json, capsys, status):
    before = cdk_json.read_bytes()
    account.package(PROD_3, status=status)

    code, out, err = account.promote("--stage", "prod", "--package", PROD_3, cdk_json=cdk_json, capsys=capsys)

    assert (code, out) == (1, "")
    assert f"ModelPackageStatus is {status}, not Completed" in err
    assert cdk_json.read_bytes() == before


def test_a_package_without_metadata_says_so(account, cdk_json, capsys):
    account.package(PROD_3, metadata={})
    code, out, _ = account.promote("--stage", "prod", "--package", PROD_3, cdk_json=cdk_json, capsys=capsys)
    assert code == 0
    assert "Approved, Completed; no CustomerMetadataProperties" in out


# --- the ARN is checked offline, as the config checks it --------------------------------------------------


@pytest.mark.parametrize(
    ("arn", "reason"),
    [
        ("dogbreed-prod/3", "must look like a versioned model package ARN"),
        # An unversioned package (a Marketplace listing) has no /N.
        (f"arn:aws:sagemaker:{PACKAGE_REGION}:{ACCOUNT}:model-package/dogbreed-prod", "must look like"),
        (
            package_arn("prod", 3, group="dogbreed-dev"),
            "must be a version of this stage's model package group",
        ),
    ],
    ids=["malformed", "unversioned", "other-group"],
)
def test_an_arn_the_config_rejects_fails_with_its_message_before_any_aws_call(
    account, cdk_json, capsys, arn, reason
):
    before = cdk_json.read_bytes()

    code, out, err = account.promote("--stage", "prod", "--package", arn, cdk_json=cdk_json, capsys=capsys)

    assert (code, out) == (2, "")
    assert err == f"promote: config error: {config_message('prod', arn)}\n"
    assert err.startswith(f"promote: config error: dogbreed:stages.prod.model_package_arn: {reason}")
    assert account.regions_asked == []  # no client, so no request (and the Stubber has none queued)
    assert cdk_json.read_bytes() == before


def test_an_unknown_stage_is_one_line(account, cdk_json, capsys):
    code, out, err = account.promote(
        "--stage", "staging", "--package", PROD_3, cdk_json=cdk_json, capsys=capsys
    )
    assert (code, out) == (2, "")
    assert err == "promote: config error: stage: must be one of dev, prod (got 'staging')\n"


def test_a_region_other_than_the_packages_is_refused_before_any_aws_call(account, cdk_json, capsys):
    code, out, err = account.promote(
        "--stage", "prod", "--package", PROD_3, "--region", "eu-west-1", cdk_json=cdk_json, capsys=capsys
    )
    assert (code, out) == (2, "")
    assert err == (
        "promote: --region eu-west-1: the package is in us-east-1, and SageMaker describes it only there\n"
    )
    assert account.regions_asked == []


def test_the_packages_own_region_may_be_given(account, cdk_json, capsys):
    account.package(PROD_3)
    code, _, _ = account.promote(
        "--stage", "prod", "--package", PROD_3, "--region", PACKAGE_REGION, cdk_json=cdk_json, capsys=capsys
    )
    assert code == 0
    assert account.regions_asked == [PACKAGE_REGION]


# --- AWS refuses: one line, nothing written ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "status"),
    [
        ("AccessDeniedException", DENIED, 403),
        ("ValidationException", f"ModelPackage {PROD_3} does not exist.", 400),
        ("ThrottlingException", "Rate exceeded", 400),
    ],
    ids=["access-denied", "no-such-package", "throttled"],
)
def test_an_aws_refusal_is_one_line_with_its_reason_and_exit_code_2(
    account, cdk_json, capsys, code, message, status
):
    before = cdk_json.read_bytes()
    account.refuses(code, message, status)

    exit_code, out, err = account.promote(
        "--stage", "prod", "--package", PROD_3, cdk_json=cdk_json, capsys=capsys
    )

    assert (exit_code, out) == (2, "")
    assert err == f"CANNOT CHECK model package: DescribeModelPackage: {code}: {message}\n"
    assert cdk_json.read_bytes() == before


def test_no_credentials_is_one_line_and_exit_code_2(monkeypatch, tmp_path, cdk_json, capsys):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    before = cdk_json.read_bytes()

    code = main(["--stage", "prod", "--package", PROD_3], cdk_json=cdk_json)

    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith("promote: no AWS credentials (aws configure, AWS_PROFILE, AWS_ACCESS_KEY_ID)")
    assert err.count("\n") == 1
    assert cdk_json.read_bytes() == before


# --- the file ---------------------------------------------------------------------------------------------


def test_the_committed_cdk_json_is_laid_out_as_promote_writes_it():
    """Otherwise a promotion would also reformat the file, and its diff would not be one line."""
    text = (REPO_ROOT / "cdk.json").read_text()
    assert json.dumps(json.loads(text), indent=2) + "\n" == text


def test_the_rewritten_cdk_json_keeps_its_permissions_and_leaves_no_temporary_file(account, cdk_json, capsys):
    cdk_json.chmod(0o644)
    account.package(PROD_3)
    code, _, _ = account.promote("--stage", "prod", "--package", PROD_3, cdk_json=cdk_json, capsys=capsys)
    assert code == 0
    assert cdk_json.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in cdk_json.parent.iterdir()) == ["cdk.json"]


# --- make promote -----------------------------------------------------------------------------------------


def make_n(*variables: str) -> subprocess.CompletedProcess:
    """`make -n promote VARS`: what make would run, without running it (or AWS)."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("STAGE", "PACKAGE", "MAKEFLAGS", "MFLAGS")
    }
    return subprocess.run(  # noqa: S603 (fixed argv: make and literal arguments)
        ["make", "-n", "promote", *variables],  # noqa: S607 (make from PATH, as a developer runs it)
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ((f"PACKAGE={PROD_3}",), "STAGE is not set: make promote STAGE=dev|prod PACKAGE="),
        (("STAGE=prod",), "PACKAGE is not set: make promote STAGE=prod PACKAGE="),
    ],
    ids=["no-stage", "no-package"],
)
def test_make_promote_needs_stage_and_package(variables, message):
    result = make_n(*variables)
    assert result.returncode != 0
    assert message in result.stderr
    assert "stacks.promote" not in result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_promote_runs_the_module_with_both():
    result = make_n("STAGE=prod", f"PACKAGE={PROD_3}")
    assert result.returncode == 0, result.stderr
    assert f"-m stacks.promote --stage prod --package '{PROD_3}'" in result.stdout
