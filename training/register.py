"""Register a trained model as a new version of the stage's SageMaker model package group.

    python -m training.register --model-data-url s3://BUCKET/.../model.tar.gz --metrics PATH|s3://...
        [--stage dev] [--region R] [--training-job NAME] [--git-commit SHA] [--dry-run]

One ``CreateModelPackage`` request (boto3, not the SageMaker SDK) into group ``dogbreed-<stage>``
(declared by the stage's training stack): the stage's inference container, environment and instance
type, the endpoint's content types, the metadata that tells versions apart, and a model quality report
(``model-metrics-<digest>.json``, named by its content and uploaded next to the artifact) that SageMaker
Studio shows. The version starts as ``PendingManualApproval``; approving it and ``make promote`` put it
into cdk.json.

A metrics file of a run that did not finish or never tested its model is refused, and so is an artifact
outside the stage's bucket (the stage's model role could not read it). ``--dry-run`` prints
the request and the report and calls no AWS API (with a local ``--metrics`` it needs no credentials).

Standard library, boto3 and the repo's plain modules only: no torch, no CDK, no SageMaker SDK.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import math
import os
import re
import shlex
import sys
import tarfile
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from inference.model_config import RESPONSE_CONTENT_TYPE, SUPPORTED_CONTENT_TYPES
from stacks.config import MODEL_URL, ConfigError, StageConfig
from stacks.dlc_images import INFERENCE_REPOSITORY, UnknownRegion, image_uri
from stacks.model_environment import model_environment, stage_config_from_cdk_json

# The model quality report, in the artifact's S3 "directory" and named by its content:
# .../<job>/output/model-metrics-<the first 12 hex digits of its SHA-256>.json. A registration with other
# numbers writes another object, so no existing version's ContentDigest ever names overwritten bytes.
REPORT_NAME = "model-metrics-{digest}.json"
REPORT_DIGEST_CHARS = 12
REPORT_CONTENT_TYPE = "application/json"
# Our own section of the report; bump the version when its shape changes.
REPORT_SECTION = "dogbreed"
REPORT_FORMAT_VERSION = 1
FRAMEWORK = "PYTORCH"
APPROVAL_STATUS = "PendingManualApproval"
# CustomerMetadataProperties limits (CreateModelPackage): at most 50 entries, keys 1-128 characters,
# values 1-256, both of letters, numbers, separators and _.:/=+-@ only.
METADATA_MAX_ENTRIES = 50
METADATA_KEY_MAX = 128
METADATA_VALUE_MAX = 256
_METADATA_PUNCTUATION = frozenset("_.:/=+-@")
# SageMaker writes a job's artifact to <output_path>/<job>/output/model.tar.gz.
_JOB_ARTIFACT = re.compile(r"/(?P<job>[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62})/output/model\.tar\.gz$")
# Written by training.train into --output-dir; SageMaker tars that dir into output.tar.gz.
METRICS_FILENAME = "metrics.json"
# What a registered model must have been measured on: a model that was never tested is not registered.
REQUIRED_TEST_KEYS = ("test_acc1", "test_acc5", "test_samples")
# Where deployable artifacts go in the stage's bucket: MODELS_PREFIX of
# stacks/constructs/artifact_bucket.py (no CDK import here).
MODELS_PREFIX = "models/"


class RegisterError(ValueError):
    """A bad argument or metrics file; the message is one line for the user."""


# --- inputs ----------------------------------------------------------------------------------------------


def split_model_data_url(url: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://BUCKET/KEY.tar.gz`` URL: the rule the stage config checks too."""
    match = MODEL_URL.fullmatch(url)
    if match is None:
        raise RegisterError(f"--model-data-url must be an s3://BUCKET/KEY.tar.gz URL (got {url!r})")
    return match["bucket"], match["key"]


def check_stage_bucket(model_data_url: str, config: StageConfig, region: str) -> None:
    """Refuse, offline, an artifact outside the stage's bucket ``dogbreed-<stage>-<account>-<region>``
    (stacks/constructs/artifact_bucket.py): the stage's model role reads only that bucket and the stage's key,
    so an endpoint could not load the version. The deploy-time check compares the exact name; here the
    account is not known, so it is any 12 digits."""
    bucket, _ = split_model_data_url(model_data_url)
    stage_bucket = f"{config.stack_prefix}-<account>-{region}"
    if not re.fullmatch(rf"{re.escape(config.stack_prefix)}-[0-9]{{12}}-{re.escape(region)}", bucket):
        raise RegisterError(
            f"{model_data_url} is not in the {config.stage} stage's bucket {stage_bucket}: the model role of "
            f"the stage reads only its stage's bucket and key; copy it to "
            f"s3://{stage_bucket}/{MODELS_PREFIX}... first"
        )


def report_name(body: bytes) -> str:
    """``model-metrics-<first 12 hex of sha256(body)>.json``: the report's name follows from its bytes."""
    return REPORT_NAME.format(digest=hashlib.sha256(body).hexdigest()[:REPORT_DIGEST_CHARS])


def report_uri(model_data_url: str, body: bytes) -> str:
    """Where the report goes: next to the artifact, so each version's report lives with its model, under
    a name of its content, so a report once registered is never overwritten by another's bytes."""
    bucket, key = split_model_data_url(model_data_url)
    directory = key.rpartition("/")[0]
    return f"s3://{bucket}/{directory + '/' if directory else ''}{report_name(body)}"


def training_job_from_url(model_data_url: str) -> str | None:
    """The job name in a SageMaker artifact URL ``.../<job>/output/model.tar.gz``, else None."""
    match = _JOB_ARTIFACT.search(model_data_url)
    return match["job"] if match else None


def load_metrics(source: str, s3_client: Any = None) -> dict[str, Any]:
    """``metrics.json`` from a local file or ``s3://`` object: the JSON itself or an ``output.tar.gz``
    holding it (what SageMaker makes of the job's output dir). Checked by :func:`check_metrics`."""
    if source.startswith("s3://"):
        bucket, _, key = source[len("s3://") :].partition("/")
        if not bucket or not key:
            raise RegisterError(f"--metrics must be a file or s3://BUCKET/KEY (got {source!r})")
        if s3_client is None:
            raise RegisterError("reading s3:// metrics needs an S3 client")
        data = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise RegisterError(f"cannot read --metrics {source}: {exc.strerror or exc}") from None
    metrics = _metrics_from_bytes(data, source)
    check_metrics(metrics, source)
    return metrics


def _metrics_from_bytes(data: bytes, source: str) -> dict[str, Any]:
    if data[:2] == b"\x1f\x8b":  # gzip: output.tar.gz, by content rather than by name
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                members = [m for m in tar if m.isfile() and Path(m.name).name == METRICS_FILENAME]
                if not members:
                    raise RegisterError(f"{source} holds no {METRICS_FILENAME}")
                # The top-level one (SageMaker tars the output dir's contents: "metrics.json").
                member = min(members, key=lambda m: m.name.count("/"))
                data = tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, gzip.BadGzipFile) as exc:
            raise RegisterError(f"{source} is not a readable tar.gz: {exc}") from None
    try:
        metrics = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegisterError(f"{source} is not JSON: {exc}") from None
    if not isinstance(metrics, dict):
        raise RegisterError(f"{source} is not a metrics.json object")
    return metrics


def check_metrics(metrics: Mapping[str, Any], source: str = METRICS_FILENAME) -> None:
    """Refuse what must not become a model package: an unfinished run, or one without test numbers."""
    if metrics.get("complete") is not True:
        raise RegisterError(
            f"{source} is from a run that did not finish (complete is not true): not registered"
        )
    missing = [key for key in REQUIRED_TEST_KEYS if not _is_number(metrics.get(key))]
    if missing or metrics["test_samples"] <= 0:
        raise RegisterError(
            f"{source} has no test results ({', '.join(missing) or 'test_samples is 0'}): a model that was "
            "never tested is not registered; give training a test/ split"
        )
    if not isinstance(metrics.get("config"), Mapping) or not {"arch", "image_size"} <= set(metrics["config"]):
        raise RegisterError(f"{source} has no config with arch and image_size")
    if not isinstance(metrics.get("num_classes"), int):
        raise RegisterError(f"{source} has no num_classes (training.train writes it): retrain or add it")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def stage_config(stage: str, model_data_url: str) -> StageConfig:
    """The stage's validated cdk.json config (image tag, instance type, Model environment)."""
    return stage_config_from_cdk_json(stage, model_data_url=model_data_url)


# --- the report and the request --------------------------------------------------------------------------


def metrics_report(
    metrics: Mapping[str, Any], *, model_data_url: str, training_job: str, git_commit: str
) -> dict[str, Any]:
    """The model quality statistics file of the package (``ModelMetrics.ModelQuality.Statistics``).

    ``multiclass_classification_metrics.accuracy`` is the format of SageMaker's model quality metrics
    for a multiclass classifier, which Studio renders on the version's page ("Model quality metrics and
    Amazon CloudWatch monitoring", https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-model-quality-metrics.html):
    ``{"value": test top-1, "standard_deviation": ...}``. Model Monitor estimates the deviation from
    repeated 80 % subsamples; here it is the standard error of a proportion over the test set,
    sqrt(p (1 - p) / n). The ``dogbreed`` section holds the rest: test top-1/top-5/loss/samples, the
    kept weights' validation numbers (``kept``) and every epoch's record (``epochs``, metrics.json's).
    """
    acc1, samples = float(metrics["test_acc1"]), int(metrics["test_samples"])
    config = metrics["config"]
    return {
        "multiclass_classification_metrics": {
            "accuracy": {"value": acc1, "standard_deviation": math.sqrt(acc1 * (1 - acc1) / samples)}
        },
        REPORT_SECTION: _finite(
            {
                "format_version": REPORT_FORMAT_VERSION,
                "model_data_url": model_data_url,
                "training_job": training_job,
                "git_commit": git_commit,
                "arch": config["arch"],
                "num_classes": metrics["num_classes"],
                "image_size": config["image_size"],
                "test": {
                    "acc1": acc1,
                    "acc5": float(metrics["test_acc5"]),
                    "loss": metrics.get("test_loss"),
                    "samples": samples,
                },
                "kept": dict(metrics.get("kept") or {}),
                "epochs": list(metrics.get("epochs") or []),
            }
        ),
    }


def _finite(value: Any) -> Any:
    """NaN and infinity as null: JSON has neither, and strict readers (Studio's) reject Python's NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def report_body(report: Mapping[str, Any]) -> bytes:
    """The report's bytes: canonical (sorted keys), so a rerun uploads the same object and digest."""
    return (json.dumps(report, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def client_token(group: str, model_data_url: str, body: bytes) -> str:
    """CreateModelPackage's idempotency token (1-36 of [a-zA-Z0-9-]): a UUID of group and artifact whose
    last 12 hex digits are the report's (those of its name). A retry with the same artifact and report is
    the same request, so SageMaker answers with the version it made instead of creating a second one;
    other numbers for the same artifact are another request, with a report of their own."""
    artifact = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{group}|{model_data_url}"))
    return artifact[:-REPORT_DIGEST_CHARS] + hashlib.sha256(body).hexdigest()[:REPORT_DIGEST_CHARS]


def framework_version(image_tag: str) -> str:
    """``2.6.0`` of ``2.6.0-gpu-py312``: the inference image's PyTorch version."""
    return image_tag.split("-", 1)[0]


def resolve_training_job(training_job: str | None, model_data_url: str) -> str:
    return training_job or training_job_from_url(model_data_url) or "none"


def resolve_git_commit(git_commit: str | None, metrics: Mapping[str, Any]) -> str:
    return git_commit or metrics.get("git_commit") or "unknown"


def customer_metadata(metrics: Mapping[str, Any], *, training_job: str, git_commit: str) -> dict[str, str]:
    """What tells versions apart in the registry's list view, checked against AWS's limits here: the
    service would reject a bad value only after the report is uploaded."""
    properties = {
        "arch": str(metrics["config"]["arch"]),
        "num_classes": str(metrics["num_classes"]),
        "image_size": str(metrics["config"]["image_size"]),
        "training_job": training_job,
        "git_commit": git_commit,
        "test_acc1": f"{metrics['test_acc1']:.6g}",
        "test_acc5": f"{metrics['test_acc5']:.6g}",
    }
    for key, value in properties.items():
        if not 1 <= len(value) <= METADATA_VALUE_MAX or not all(map(_metadata_char, value)):
            raise RegisterError(
                f"metadata {key}={value!r}: must be 1-{METADATA_VALUE_MAX} letters, digits, spaces or "
                "_.:/=+-@"
            )
    return properties


def _metadata_char(char: str) -> bool:
    # The model's pattern: [\p{L}\p{Z}\p{N}_.:\/=+\-@]
    return unicodedata.category(char)[0] in "LZN" or char in _METADATA_PUNCTUATION


@dataclass(frozen=True)
class Registration:
    """One version to register: the ``CreateModelPackage`` parameters and the report they point at."""

    request: dict[str, Any]
    report: dict[str, Any]

    @property
    def report_uri(self) -> str:
        return self.request["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]

    @property
    def report_body(self) -> bytes:
        return report_body(self.report)


def prepare(
    config: StageConfig,
    *,
    model_data_url: str,
    metrics: Mapping[str, Any],
    region: str,
    training_job: str | None = None,
    git_commit: str | None = None,
) -> Registration:
    """The request and its report, offline: nothing here calls AWS."""
    check_stage_bucket(model_data_url, config, region)
    check_metrics(metrics)
    job = resolve_training_job(training_job, model_data_url)
    commit = resolve_git_commit(git_commit, metrics)
    report = metrics_report(metrics, model_data_url=model_data_url, training_job=job, git_commit=commit)
    body = report_body(report)
    group = config.model_package_group_name
    request = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": (
            f"{metrics['config']['arch']}, test top-1 {metrics['test_acc1']:.4f} (top-5 "
            f"{metrics['test_acc5']:.4f}, {metrics['test_samples']} images), training job {job}"
        ),
        "InferenceSpecification": {
            "Containers": [
                {
                    "Image": image_uri(INFERENCE_REPOSITORY, config.inference_image_tag, region),
                    "ModelDataUrl": model_data_url,
                    "Environment": model_environment(config),
                    "Framework": FRAMEWORK,
                    "FrameworkVersion": framework_version(config.inference_image_tag),
                }
            ],
            "SupportedContentTypes": sorted(SUPPORTED_CONTENT_TYPES),
            "SupportedResponseMIMETypes": [RESPONSE_CONTENT_TYPE],
            "SupportedRealtimeInferenceInstanceTypes": [config.instance_type],
        },
        "ModelMetrics": {
            "ModelQuality": {
                "Statistics": {
                    "ContentType": REPORT_CONTENT_TYPE,
                    "S3Uri": report_uri(model_data_url, body),
                    # The report's hash: the version names exactly the bytes uploaded for it.
                    "ContentDigest": f"sha256:{hashlib.sha256(body).hexdigest()}",
                }
            }
        },
        "CustomerMetadataProperties": customer_metadata(metrics, training_job=job, git_commit=commit),
        "ModelApprovalStatus": APPROVAL_STATUS,
        "ClientToken": client_token(group, model_data_url, body),
    }
    return Registration(request=request, report=report)


def aws_client(service: str, region: str) -> Any:
    """A boto3 client (``sagemaker``, ``s3``) for the region; the one place this module makes one.

    A session of its own: boto3's default session keeps the credentials it found first in the process.
    """
    import boto3

    return boto3.Session(region_name=region).client(service)


def create(registration: Registration, *, sagemaker_client: Any, s3_client: Any) -> str:
    """Upload a prepared registration's report, then create its version; returns the versioned ARN.

    The report goes first, so the version never points at a missing file; its key is named by its
    content, so the upload never replaces the report of another version. No SSE arguments: the bucket's
    default encryption (the stage's KMS key) applies.
    """
    bucket, _, key = registration.report_uri[len("s3://") :].partition("/")
    s3_client.put_object(
        Bucket=bucket, Key=key, Body=registration.report_body, ContentType=REPORT_CONTENT_TYPE
    )
    return sagemaker_client.create_model_package(**registration.request)["ModelPackageArn"]


def approve_command(arn: str, region: str) -> str:
    """The AWS CLI command that approves model package version ``arn`` (in ``region``), as every hint
    spells it: ``aws sagemaker update-model-package --model-package-arn ARN --model-approval-status
    Approved --region REGION``."""
    return shlex.join(["aws", "sagemaker", "update-model-package", "--model-package-arn", arn,
                       "--model-approval-status", "Approved", "--region", region])  # fmt: skip


def next_steps(arn: str, config: StageConfig, region: str) -> str:
    """What to run after registering: approve the version, then write it into cdk.json."""
    return f"next: {approve_command(arn, region)}\nthen: make promote STAGE={config.stage} PACKAGE={arn}"


def command_line(
    *, stage: str, region: str, model_data_url: str, metrics: str, training_job: str, git_commit: str | None
) -> str:
    """This module's command for an artifact not yet written (``training.launch --dry-run --register``)."""
    argv = ["python", "-m", "training.register", "--stage", stage, "--region", region,
            "--model-data-url", model_data_url, "--metrics", metrics,
            "--training-job", training_job]  # fmt: skip
    if git_commit:
        argv += ["--git-commit", git_commit]
    return shlex.join(argv)


# Everything a registration can fail with that is the user's to fix: one line each, never a traceback.
ERRORS = (RegisterError, ConfigError, UnknownRegion, ClientError, BotoCoreError)


def error_line(exc: BaseException, group: str | None = None) -> str:
    """One line for ``exc``, with a hint where the stage's group does not exist yet."""
    message = " ".join(str(exc).split())
    if isinstance(exc, ClientError) and group:
        code = exc.response.get("Error", {}).get("Code", "")
        unknown_group = group in message and re.search(r"does not exist|not found", message, re.IGNORECASE)
        if code == "ResourceNotFound" or unknown_group:
            message += f" (model package group {group} is declared by the stage's training stack: deploy it)"
    return message


# --- command line -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.register", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-data-url", required=True, help="the artifact: s3://BUCKET/KEY/model.tar.gz")
    p.add_argument(
        "--metrics",
        required=True,
        help="metrics.json or the job's output.tar.gz holding it: a local path or s3://BUCKET/KEY",
    )
    p.add_argument("--stage", default="dev", help="the cdk.json stage; group dogbreed-<stage> (default: dev)")
    p.add_argument("--region", help="default: AWS_REGION, else AWS_DEFAULT_REGION")
    p.add_argument(
        "--training-job", help="default: from a SageMaker URL .../<job>/output/model.tar.gz, else none"
    )
    p.add_argument("--git-commit", help="default: metrics.json's git_commit, else unknown")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the request and the report; call no AWS API (none at all with a local --metrics)",
    )
    return p


def main(
    argv: Sequence[str] | None = None, *, sagemaker_client: Any = None, s3_client: Any = None
) -> dict[str, Any] | str:
    """The CLI; clients may be passed in (tests). Returns the request (--dry-run) or the new ARN."""
    args = build_parser().parse_args(argv)
    group = None
    try:
        region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise RegisterError("no AWS region: pass --region or set AWS_REGION")
        split_model_data_url(args.model_data_url)
        config = stage_config(args.stage, args.model_data_url)
        group = config.model_package_group_name
        check_stage_bucket(args.model_data_url, config, region)  # before any AWS call
        if s3_client is None and (args.metrics.startswith("s3://") or not args.dry_run):
            s3_client = aws_client("s3", region)
        metrics = load_metrics(args.metrics, s3_client)
        settings = {"model_data_url": args.model_data_url, "metrics": metrics, "region": region,
                    "training_job": args.training_job, "git_commit": args.git_commit}  # fmt: skip
        registration = prepare(config, **settings)
        if args.dry_run:
            print(json.dumps({"report_uri": registration.report_uri, "report": registration.report,
                              "CreateModelPackage": registration.request}, indent=2))  # fmt: skip
            return registration.request
        if sagemaker_client is None:
            sagemaker_client = aws_client("sagemaker", region)
        arn = create(registration, sagemaker_client=sagemaker_client, s3_client=s3_client)
    except ERRORS as exc:
        raise SystemExit(f"training.register: {error_line(exc, group)}") from None
    print(f"registered {arn} ({APPROVAL_STATUS}); report {registration.report_uri}")
    print(next_steps(arn, config, region))
    return arn


if __name__ == "__main__":
    main(sys.argv[1:])
