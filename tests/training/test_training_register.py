"""training.register: a finished, tested run becomes one PendingManualApproval version of the stage's group.

The request is checked against botocore's service model (limits, enums and patterns included); the real
path runs on real boto3 clients whose calls a Stubber answers, so nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import NoCredentialsError
from botocore.stub import ANY, Stubber
from botocore.validate import ParamValidator
from infra.service_model import check_request, service_model
from training_helpers import REPO, clean_env, run_command

from stacks.model_environment import model_environment
from training import provenance, register

REGION = "us-east-1"
BUCKET = "dogbreed-dev-111122223333-us-east-1"
JOB = "dogbreed-dev-20260102-030405"
MODEL_URL = f"s3://{BUCKET}/training-output/{JOB}/output/model.tar.gz"
# The report lies next to model.tar.gz, named by its content: model-metrics-<12 hex of its sha256>.json.
REPORT_DIR = f"training-output/{JOB}/output/"
METRICS_URL = f"s3://{BUCKET}/training-output/{JOB}/output/output.tar.gz"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
ARN = "arn:aws:sagemaker:us-east-1:111122223333:model-package/dogbreed-dev/3"
# The endpoint's contract (inference.model_config), as the package must advertise it.
IMAGE_TYPES = ["application/x-image", "image/jpeg", "image/png", "image/webp"]


def finished_run() -> dict[str, Any]:
    """metrics.json as training.train writes it at the end of a run with a test split."""
    epoch = {"train_loss": 1.9, "train_acc1": 0.5, "val_loss": 1.2, "val_acc1": 0.7, "val_acc5": 0.9,
             "val_samples": 835, "lr": 0.01, "images_per_sec": 350.0, "epoch_seconds": 19.0}  # fmt: skip
    return {
        "epochs": [{"epoch": 1, **epoch}, {"epoch": 2, **epoch, "val_acc1": 0.8, "val_loss": 0.61}],
        "complete": True,
        "world_size": 1,
        "config": {"arch": "resnet50", "image_size": 224, "epochs": 2, "keep": "best"},
        "num_classes": 133,
        "git_commit": COMMIT,
        "kept": {"keep": "best", "epoch": 2, "val_loss": 0.61, "val_acc1": 0.8, "val_acc5": 0.9},
        "mixed_precision": "float16",
        "test_loss": 0.65,
        "test_acc1": 0.8123,
        "test_acc5": 0.9512,
        "test_samples": 836,
    }


@pytest.fixture(scope="module")
def dev():
    return register.stage_config("dev", MODEL_URL)


@pytest.fixture
def fake_aws(monkeypatch, tmp_path):
    """Credentials that sign but reach nothing (the Stubber answers first), and no region of the machine's."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def output_tar_gz(metrics: dict[str, Any]) -> bytes:
    """What SageMaker makes of the job's SM_OUTPUT_DATA_DIR: metrics.json and the curves at the top."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (
            ("training_curves.png", b"\x89PNG"),
            ("metrics.json", json.dumps(metrics).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def clients() -> tuple[Any, Any]:
    """Real (sagemaker, s3) clients of a fresh session: the default one would keep its first credentials."""
    session = boto3.Session(region_name=REGION)
    return session.client("sagemaker"), session.client("s3")


def report_key(body: bytes) -> str:
    return f"{REPORT_DIR}model-metrics-{hashlib.sha256(body).hexdigest()[:12]}.json"


def recorded(client, operation: str, calls: list[tuple[str, dict[str, Any]]]) -> None:
    """Record each call of ``operation`` with the parameters as the code passed them."""

    def record(params, **_):
        calls.append((operation, dict(params)))

    client.meta.events.register(f"before-parameter-build.*.{operation}", record)


# --- the request ------------------------------------------------------------------------------------------


def test_the_request_registers_the_stages_serving_container_as_a_pending_version(dev):
    request = register.prepare(dev, model_data_url=MODEL_URL, metrics=finished_run(), region=REGION).request

    assert request["ModelPackageGroupName"] == "dogbreed-dev" == dev.model_package_group_name
    [container] = request["InferenceSpecification"]["Containers"]
    # The DLC account of the region, the stage's inference image, the stack's Model environment.
    assert (
        container["Image"]
        == f"763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:{dev.inference_image_tag}"
    )
    assert container["ModelDataUrl"] == MODEL_URL
    assert container["Environment"] == model_environment(dev)
    assert container["Framework"] == "PYTORCH"
    assert dev.inference_image_tag.startswith(container["FrameworkVersion"] + "-")
    assert container["FrameworkVersion"].count(".") == 2  # 2.6.0, not 2.6.0-gpu
    spec = request["InferenceSpecification"]
    assert spec["SupportedContentTypes"] == IMAGE_TYPES
    assert spec["SupportedResponseMIMETypes"] == ["application/json"]
    assert spec["SupportedRealtimeInferenceInstanceTypes"] == [dev.instance_type]
    assert request["ModelApprovalStatus"] == "PendingManualApproval"
    assert request["CustomerMetadataProperties"] == {
        "arch": "resnet50", "num_classes": "133", "image_size": "224", "training_job": JOB,
        "git_commit": COMMIT, "test_acc1": "0.8123", "test_acc5": "0.9512",
    }  # fmt: skip
    assert request["ModelPackageDescription"] == (
        f"resnet50, test top-1 0.8123 (top-5 0.9512, 836 images), training job {JOB}"
    )
    statistics = request["ModelMetrics"]["ModelQuality"]["Statistics"]
    body = register.prepare(dev, model_data_url=MODEL_URL, metrics=finished_run(), region=REGION).report_body
    assert statistics["S3Uri"] == f"s3://{BUCKET}/{report_key(body)}"  # next to model.tar.gz, by content
    assert statistics["ContentType"] == "application/json"


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_request_is_valid_for_create_model_package(stage):
    """Lengths, enums and patterns as SageMaker checks them (tests/infra/service_model), and botocore's own
    client-side validation, which is what boto3 runs before sending."""
    url = MODEL_URL.replace("dogbreed-dev-", f"dogbreed-{stage}-")  # the stage's own bucket
    config = register.stage_config(stage, url)
    request = register.prepare(config, model_data_url=url, metrics=finished_run(), region=REGION).request

    check = check_request("CreateModelPackage", request)
    assert check.errors == []
    assert check.skipped == []  # every pattern was compiled and checked, the \p{L} ones of the metadata too
    assert check.patterns_checked >= 20
    shape = service_model("sagemaker").operation_model("CreateModelPackage").input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()
    assert request["ModelPackageGroupName"] == f"dogbreed-{stage}"


def test_a_value_the_registry_would_reject_fails_before_anything_is_uploaded(dev):
    # CustomerMetadataValue allows letters, numbers, separators and _.:/=+-@: no commas, no parentheses.
    with pytest.raises(register.RegisterError, match=r"git_commit='abc, dirty'"):
        register.prepare(
            dev, model_data_url=MODEL_URL, metrics=finished_run(), region=REGION, git_commit="abc, dirty"
        )
    with pytest.raises(register.RegisterError, match="1-256"):
        register.prepare(
            dev, model_data_url=MODEL_URL, metrics=finished_run(), region=REGION, git_commit="a" * 257
        )


def test_a_retry_is_the_same_request_and_other_numbers_artifact_or_stage_another_token(dev):
    """SageMaker answers a repeated ClientToken with the version it made (that part is the service's):
    what is ours is that a retry sends the same token, and anything else another one."""
    first = register.prepare(dev, model_data_url=MODEL_URL, metrics=finished_run(), region=REGION)
    retry = register.prepare(dev, model_data_url=MODEL_URL, metrics=finished_run(), region=REGION)
    assert first.request == retry.request  # token and report key included
    token = first.request["ClientToken"]
    # A UUID-shaped token whose last group is the report's digest, the one its file name carries.
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", token)
    assert token[-12:] == hashlib.sha256(first.report_body).hexdigest()[:12]
    assert first.report_uri.endswith(f"model-metrics-{token[-12:]}.json")

    better = {**finished_run(), "test_acc1": 0.85}
    rerun = register.prepare(dev, model_data_url=MODEL_URL, metrics=better, region=REGION).request
    other_artifact = MODEL_URL.replace(JOB, "dogbreed-dev-20260103-000000")
    other = register.prepare(
        dev, model_data_url=other_artifact, metrics=finished_run(), region=REGION
    ).request
    prod = register.prepare(
        register.stage_config("prod", MODEL_URL),
        model_data_url=MODEL_URL.replace("dogbreed-dev-", "dogbreed-prod-"),
        metrics=finished_run(),
        region=REGION,
    ).request
    tokens = [token, rerun["ClientToken"], other["ClientToken"], prod["ClientToken"]]
    assert len(set(tokens)) == 4
    assert rerun["ClientToken"][:24] == token[:24]  # the same artifact, another report


def test_a_registration_with_changed_metrics_writes_a_new_report_never_the_old_one(dev, fake_aws):
    """A version's ContentDigest names bytes that stay as they are: another registration of the same
    artifact with other numbers uploads to another key, under another token; the same numbers again
    repeat the first request exactly (the same key, the same bytes, the same token)."""
    sagemaker, s3 = clients()
    calls: list[tuple[str, dict[str, Any]]] = []
    recorded(s3, "PutObject", calls)
    recorded(sagemaker, "CreateModelPackage", calls)
    runs = [finished_run(), {**finished_run(), "test_acc1": 0.85, "test_loss": 0.5}, finished_run()]
    with Stubber(s3) as s3_stub, Stubber(sagemaker) as sagemaker_stub:
        for metrics in runs:
            s3_stub.add_response("put_object", {"ETag": '"1"'})
            sagemaker_stub.add_response("create_model_package", {"ModelPackageArn": ARN})
            registration = register.prepare(dev, model_data_url=MODEL_URL, metrics=metrics, region=REGION)
            register.create(registration, sagemaker_client=sagemaker, s3_client=s3)
        s3_stub.assert_no_pending_responses()

    puts = [params for name, params in calls if name == "PutObject"]
    creates = [params for name, params in calls if name == "CreateModelPackage"]
    keys = [put["Key"] for put in puts]
    assert keys == [report_key(put["Body"]) for put in puts]  # each named by its own bytes
    assert keys[1] != keys[0] == keys[2]  # other numbers never replace the first version's report
    assert creates[1]["ClientToken"] != creates[0]["ClientToken"]  # a new request, not a mismatched retry
    for put, create in zip(puts, creates, strict=True):
        statistics = create["ModelMetrics"]["ModelQuality"]["Statistics"]
        assert statistics["S3Uri"] == f"s3://{BUCKET}/{put['Key']}"
        assert statistics["ContentDigest"] == "sha256:" + hashlib.sha256(put["Body"]).hexdigest()
    assert (puts[2], creates[2]) == (puts[0], creates[0])  # the same numbers: the same request again


# --- the stage's bucket -----------------------------------------------------------------------------------

STAGE_BUCKET_HINT = (
    "the model role of the stage reads only its stage's bucket and key; copy it to "
    "s3://dogbreed-dev-<account>-us-east-1/models/... first"
)


@pytest.mark.parametrize(
    "bucket",
    [
        "dogbreed-prod-111122223333-us-east-1",  # another stage's
        "dogbreed-dev-111122223333-eu-west-1",  # another region's
        "my-models",  # not the project's
        "dogbreed-dev-data",  # no account and region
        "dogbreed-dev-us-east-1",  # no account
    ],
)
def test_an_artifact_outside_the_stages_bucket_is_refused_offline(tmp_path, fake_aws, bucket, capsys):
    """The endpoint's model role reads only dogbreed-<stage>-<account>-<region>: anywhere else the version
    could never serve. Refused before any AWS call: the metrics in S3 are not even read."""
    _, s3 = clients()
    url = f"s3://{bucket}/training-output/{JOB}/output/model.tar.gz"
    # A Stubber without responses: any S3 call would raise UnStubbedResponseError, not exit.
    with Stubber(s3), pytest.raises(SystemExit) as exit_info:
        register.main(["--model-data-url", url, "--metrics", METRICS_URL, "--region", REGION],
                      s3_client=s3, sagemaker_client=object())  # fmt: skip
    line = str(exit_info.value.code)
    assert line.startswith(f"training.register: {url} is not in the dev stage's bucket ")
    assert line.endswith(STAGE_BUCKET_HINT) and "\n" not in line
    assert capsys.readouterr().out == ""
    with pytest.raises(register.RegisterError, match=re.escape(STAGE_BUCKET_HINT)):
        register.prepare(register.stage_config("dev", url), model_data_url=url, metrics=finished_run(),
                         region=REGION)  # fmt: skip


def test_the_stages_bucket_is_the_one_its_storage_stack_names(dev):
    register.check_stage_bucket(MODEL_URL, dev, REGION)
    register.check_stage_bucket(f"s3://{BUCKET}/models/resnet50/model.tar.gz", dev, REGION)
    prod = register.stage_config("prod", MODEL_URL)
    register.check_stage_bucket("s3://dogbreed-prod-111122223333-eu-west-1/m.tar.gz", prod, "eu-west-1")
    # ArtifactBucket: f"{props.name_prefix}-{Aws.ACCOUNT_ID}-{Aws.REGION}" (the stack passes the stage's
    # stack_prefix); the hint's prefix is MODELS_PREFIX (read from the source: importing the construct
    # would load the CDK).
    bucket = (REPO / "stacks" / "constructs" / "artifact_bucket.py").read_text()
    assert 'self.bucket_name = f"{props.name_prefix}-{Aws.ACCOUNT_ID}-{Aws.REGION}"' in bucket
    assert f'MODELS_PREFIX = "{register.MODELS_PREFIX}"' in bucket
    storage = (REPO / "stacks" / "storage.py").read_text()
    assert re.search(r"ArtifactBucketProps\(\s*name_prefix=config\.stack_prefix,", storage)


def test_the_demos_dry_run_registration_passes_the_bucket_check(tmp_path, capsys):
    """scripts/demo.py registers (dry run) an artifact URL of the dev stage's bucket form."""
    from scripts.demo import dry_run_registration

    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "metrics.json").write_text(json.dumps(finished_run()))
    registration = dry_run_registration(tmp_path)
    assert registration.request["ModelPackageGroupName"] == "dogbreed-dev"
    assert registration.report_uri.startswith("s3://dogbreed-dev-123456789012-us-east-1/")


def test_training_job_and_commit_come_from_the_flags_else_the_artifact_and_metrics(dev):
    def metadata(url=MODEL_URL, metrics=None, **flags):
        metrics = finished_run() if metrics is None else metrics
        return register.prepare(dev, model_data_url=url, metrics=metrics, region=REGION, **flags).request[
            "CustomerMetadataProperties"
        ]

    assert metadata()["training_job"] == JOB  # .../<job>/output/model.tar.gz
    assert metadata(training_job="job-7")["training_job"] == "job-7"
    assert metadata(url=f"s3://{BUCKET}/models/resnet50/model.tar.gz")["training_job"] == "none"
    assert metadata()["git_commit"] == COMMIT  # from metrics.json
    assert metadata(git_commit="feedbeef")["git_commit"] == "feedbeef"
    no_commit = finished_run()
    del no_commit["git_commit"]
    assert metadata(metrics=no_commit)["git_commit"] == "unknown"


# --- the report -------------------------------------------------------------------------------------------


def test_the_report_has_studios_accuracy_and_the_runs_numbers(dev):
    metrics = finished_run()
    metrics["epochs"][0]["train_loss"] = math.nan  # a diverged step: JSON has no NaN
    registration = register.prepare(dev, model_data_url=MODEL_URL, metrics=metrics, region=REGION)

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")

    report = json.loads(registration.report_body, parse_constant=no_constants)
    # SageMaker's model quality format for a multiclass classifier, which Studio renders.
    accuracy = report["multiclass_classification_metrics"]["accuracy"]
    assert accuracy["value"] == 0.8123
    assert accuracy["standard_deviation"] == pytest.approx(math.sqrt(0.8123 * 0.1877 / 836))
    ours = report["dogbreed"]
    assert ours["format_version"] == register.REPORT_FORMAT_VERSION
    assert ours["test"] == {"acc1": 0.8123, "acc5": 0.9512, "loss": 0.65, "samples": 836}
    assert ours["kept"] == metrics["kept"]  # the kept epoch's validation numbers
    assert [e["val_acc1"] for e in ours["epochs"]] == [0.7, 0.8]  # the curves
    assert ours["epochs"][0]["train_loss"] is None
    assert (ours["arch"], ours["num_classes"], ours["image_size"]) == ("resnet50", 133, 224)
    assert (ours["training_job"], ours["git_commit"], ours["model_data_url"]) == (JOB, COMMIT, MODEL_URL)
    # The registered version names these exact bytes.
    digest = registration.request["ModelMetrics"]["ModelQuality"]["Statistics"]["ContentDigest"]
    assert digest == "sha256:" + hashlib.sha256(registration.report_body).hexdigest()


# --- metrics sources --------------------------------------------------------------------------------------


def test_metrics_load_from_metrics_json_output_tar_gz_or_s3(tmp_path, fake_aws):
    metrics = finished_run()
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "output.tar.gz").write_bytes(output_tar_gz(metrics))
    assert register.load_metrics(str(tmp_path / "metrics.json")) == metrics
    assert register.load_metrics(str(tmp_path / "output.tar.gz")) == metrics

    _, s3 = clients()
    with Stubber(s3) as stub:
        stub.add_response(
            "get_object",
            {"Body": io.BytesIO(output_tar_gz(metrics))},
            {"Bucket": BUCKET, "Key": f"training-output/{JOB}/output/output.tar.gz"},
        )
        assert register.load_metrics(METRICS_URL, s3) == metrics
        stub.assert_no_pending_responses()


def _without(key):
    metrics = finished_run()
    del metrics[key]
    return metrics


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({**finished_run(), "complete": False}, "did not finish"),  # what every epoch writes until the end
        (_without("test_acc1"), "no test results (test_acc1)"),  # no test/ split
        ({**finished_run(), "test_samples": 0}, "no test results"),
        ({**finished_run(), "test_acc1": math.nan}, "no test results (test_acc1)"),
        (_without("num_classes"), "no num_classes"),
    ],
)
def test_a_run_that_did_not_finish_or_was_never_tested_is_refused(tmp_path, metrics, message, capsys):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics))
    with pytest.raises(SystemExit) as exit_info:
        register.main(
            ["--model-data-url", MODEL_URL, "--metrics", str(path), "--region", REGION, "--dry-run"]
        )
    line = str(exit_info.value.code)
    assert line.startswith("training.register: ") and message in line and "\n" not in line
    assert capsys.readouterr().out == ""  # no request printed


def test_an_output_tar_gz_without_metrics_json_is_refused(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("training_curves.png"), io.BytesIO(b""))
    path = tmp_path / "output.tar.gz"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(register.RegisterError, match=r"holds no metrics\.json"):
        register.load_metrics(str(path))


# --- the command line -------------------------------------------------------------------------------------


def offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in clean_env().items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true", HOME=str(tmp_path))  # fmt: skip
    return env


def test_dry_run_prints_the_request_and_report_without_credentials(tmp_path):
    (tmp_path / "output.tar.gz").write_bytes(output_tar_gz(finished_run()))
    cmd = [sys.executable, "-m", "training.register", "--model-data-url", MODEL_URL,
           "--metrics", str(tmp_path / "output.tar.gz"), "--region", REGION, "--dry-run"]  # fmt: skip
    proc = run_command(cmd, timeout=60, env=offline_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["report_uri"] == f"s3://{BUCKET}/{report_key(register.report_body(printed['report']))}"
    assert printed["report"]["multiclass_classification_metrics"]["accuracy"]["value"] == 0.8123
    assert check_request("CreateModelPackage", printed["CreateModelPackage"]).errors == []
    assert printed["CreateModelPackage"]["ModelPackageGroupName"] == "dogbreed-dev"  # --stage defaults to dev


def test_errors_are_one_line_on_stderr_without_a_traceback(tmp_path):
    cmd = [sys.executable, "-m", "training.register", "--model-data-url", MODEL_URL,
           "--metrics", str(tmp_path / "missing.json"), "--region", REGION, "--dry-run"]  # fmt: skip
    proc = run_command(cmd, timeout=60, env=offline_env(tmp_path))
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("training.register: cannot read --metrics")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model-data-url", MODEL_URL], "no AWS region"),
        (["--model-data-url", f"s3://{BUCKET}/model.zip", "--region", REGION], "s3://BUCKET/KEY.tar.gz"),
        (["--model-data-url", MODEL_URL, "--region", REGION, "--stage", "qa"], "stage: must be one of"),
        (
            ["--model-data-url", MODEL_URL.replace(REGION, "xx-nowhere-1"), "--region", "xx-nowhere-1"],
            "no Deep Learning Containers account",
        ),
    ],
)
def test_bad_arguments_fail_with_one_line(tmp_path, fake_aws, argv, message):
    (tmp_path / "metrics.json").write_text(json.dumps(finished_run()))
    with pytest.raises(SystemExit, match=message):
        register.main([*argv, "--metrics", str(tmp_path / "metrics.json"), "--dry-run"])


def test_a_real_run_uploads_the_report_then_creates_the_version(tmp_path, fake_aws, dev, capsys):
    (tmp_path / "metrics.json").write_text(json.dumps(finished_run()))
    expected = register.prepare(dev, model_data_url=MODEL_URL, metrics=finished_run(), region=REGION)
    sagemaker, s3 = clients()
    calls: list[tuple[str, dict[str, Any]]] = []
    recorded(s3, "PutObject", calls)
    recorded(sagemaker, "CreateModelPackage", calls)
    key = report_key(expected.report_body)
    with Stubber(s3) as s3_stub, Stubber(sagemaker) as sagemaker_stub:
        s3_stub.add_response(
            "put_object",
            {"ETag": '"1"'},
            # No SSE arguments: the bucket's default encryption (the stage's KMS key) applies.
            {"Bucket": BUCKET, "Key": key, "Body": ANY, "ContentType": "application/json"},
        )
        sagemaker_stub.add_response("create_model_package", {"ModelPackageArn": ARN}, expected.request)
        arn = register.main(
            ["--model-data-url", MODEL_URL, "--metrics", str(tmp_path / "metrics.json"), "--region", REGION],
            sagemaker_client=sagemaker,
            s3_client=s3,
        )
        s3_stub.assert_no_pending_responses()
        sagemaker_stub.assert_no_pending_responses()

    assert arn == ARN
    assert [name for name, _ in calls] == [
        "PutObject",
        "CreateModelPackage",
    ]  # never a version without report
    body = calls[0][1]["Body"]
    report = json.loads(body)
    assert report["dogbreed"]["test"]["acc1"] == 0.8123 and report["dogbreed"]["test"]["samples"] == 836
    assert calls[1][1]["ModelMetrics"]["ModelQuality"]["Statistics"]["ContentDigest"] == (
        "sha256:" + hashlib.sha256(body).hexdigest()
    )
    out = capsys.readouterr().out
    assert f"registered {ARN} (PendingManualApproval); report s3://{BUCKET}/{key}" in out
    assert f"next: {register.approve_command(ARN, REGION)}\n" in out
    assert f"make promote STAGE=dev PACKAGE={ARN}" in out


def test_the_approve_command_is_the_aws_cli_call_that_approves_the_version():
    assert register.approve_command(ARN, "eu-west-1") == (
        f"aws sagemaker update-model-package --model-package-arn {ARN} --model-approval-status Approved "
        "--region eu-west-1"
    )
    # Pasted into a shell, it is those words: nothing in an ARN or a region needs quoting.
    assert shlex.split(register.approve_command(ARN, REGION))[4:] == [
        ARN, "--model-approval-status", "Approved", "--region", REGION,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("code", "message", "hint"),
    [
        ("AccessDeniedException", "not authorized to perform: sagemaker:CreateModelPackage", None),
        ("ResourceNotFound", "Model package group dogbreed-dev does not exist.", "training stack"),
        ("ValidationException", "Model Package Group dogbreed-dev does not exist", "training stack"),
    ],
)
def test_aws_errors_are_one_line_with_a_hint_for_a_missing_group(tmp_path, fake_aws, code, message, hint):
    (tmp_path / "metrics.json").write_text(json.dumps(finished_run()))
    sagemaker, s3 = clients()
    with Stubber(s3) as s3_stub, Stubber(sagemaker) as sagemaker_stub:
        s3_stub.add_response("put_object", {"ETag": '"1"'})
        sagemaker_stub.add_client_error("create_model_package", code, message)
        with pytest.raises(SystemExit) as exit_info:
            register.main(
                [
                    "--model-data-url",
                    MODEL_URL,
                    "--metrics",
                    str(tmp_path / "metrics.json"),
                    "--region",
                    REGION,
                ],
                sagemaker_client=sagemaker,
                s3_client=s3,
            )
    line = str(exit_info.value.code)  # a str code: Python prints it to stderr and exits with status 1
    assert line.startswith("training.register: ") and "\n" not in line
    assert code in line and message.rstrip(".") in line
    assert (hint in line) if hint else ("training stack" not in line)


def test_without_credentials_the_upload_fails_with_one_line(tmp_path, monkeypatch):
    for key, value in offline_env(tmp_path).items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "metrics.json").write_text(json.dumps(finished_run()))
    with pytest.raises(SystemExit, match=rf"^training.register: {NoCredentialsError.fmt}$"):
        register.main(
            ["--model-data-url", MODEL_URL, "--metrics", str(tmp_path / "metrics.json"), "--region", REGION]
        )


# --- where it runs ----------------------------------------------------------------------------------------


def test_it_imports_no_torch_cdk_or_sagemaker_sdk():
    """It runs where only boto3 is installed (requirements-launch.txt's environment)."""
    code = (
        "import json, sys, training.register; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    proc = run_command([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout))
    assert {"botocore", "stacks", "inference"} <= loaded
    assert loaded.isdisjoint({"torch", "torchvision", "PIL", "numpy", "aws_cdk", "jsii", "sagemaker"})


def test_the_commit_is_the_environments_else_the_checkouts_else_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv(provenance.GIT_COMMIT_ENV, "feedbeef")
    assert provenance.git_commit() == "feedbeef"  # what launch.py gives a SageMaker job
    monkeypatch.delenv(provenance.GIT_COMMIT_ENV)
    # A directory that is not the root of a checkout (a job's /opt/ml/code, a copy inside another repo).
    assert provenance.git_commit(tmp_path) is None
    assert provenance.git_commit(REPO / "training") is None
    git = shutil.which("git")
    if git and (REPO / ".git").exists():
        head = subprocess.run([git, "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)  # noqa: S603
        assert provenance.git_commit() == head.stdout.strip()
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all: never an error
    assert provenance.git_commit() is None
