"""The deploy-time model package check (stacks/constructs/model_package_check/index.py), driven the way
CloudFormation drives it.

Every request's ResponseURL is a real HTTP server on the loopback interface that records the PUT as S3
would receive it, and the handler gets a real boto3 SageMaker client under botocore's Stubber: each call
is checked against the service model, and a call nobody queued is an error. What must hold: no stage deploys
a Rejected or incomplete package, and a production stage only an Approved one; a stage deploys only a
package it can serve (its bucket, its image, its instance type); the stack learns the package's artifact,
as one object its model role can be granted; a delete or a rollback is never blocked; and CloudFormation
always gets exactly one well-formed answer, before the function's timeout.
"""

from __future__ import annotations

import ast
import json
import logging
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.stub import Stubber

from stacks.constructs.model_package_check import index as check

REGION = "eu-west-1"
ARN = f"arn:aws:sagemaker:{REGION}:111122223333:model-package/dogbreed-prod/7"
OTHER_ARN = f"arn:aws:sagemaker:{REGION}:111122223333:model-package/dogbreed-prod/6"
BUCKET = "dogbreed-prod-111122223333-eu-west-1"
KEY = "training-output/job-7/output/model.tar.gz"
MODEL_URL = f"s3://{BUCKET}/{KEY}"
IMAGE = "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.6.0-gpu-py312"
INSTANCE_TYPE = "ml.g4dn.xlarge"
# What the construct passes for a stage that serves this package (training/register.py registers it so).
STAGE = {"ExpectedBucket": BUCKET, "ExpectedImage": IMAGE, "InstanceType": INSTANCE_TYPE}
STACK_ID = f"arn:aws:cloudformation:{REGION}:111122223333:stack/dogbreed-prod-serving/0f8e7d6c"
APPROVE = f"aws sagemaker update-model-package --model-package-arn {ARN} --model-approval-status Approved"
# Stubbed clients still sign their requests, so they need some (never used) keys.
KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
RESPONSE_FIELDS = {
    "Status",
    "Reason",
    "PhysicalResourceId",
    "StackId",
    "RequestId",
    "LogicalResourceId",
    "Data",
}


@dataclass
class Put:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class CloudFormation:
    """The pre-signed response URL: records every request made to it and answers ``status``."""

    url: str = ""
    status: int = 200
    puts: list[Put] = field(default_factory=list)
    answered: threading.Event = field(default_factory=threading.Event)

    def answer(self) -> dict[str, Any]:
        """The one response the handler sent, parsed."""
        assert len(self.puts) == 1, f"expected exactly one response, got {len(self.puts)}"
        return self.puts[0].json()


@pytest.fixture
def cloudformation(monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudFormation]:
    for proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)  # urllib would route 127.0.0.1 through one
    recorder = CloudFormation()

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            recorder.puts.append(Put(self.command, self.path, dict(self.headers.items()), body))
            self.send_response(recorder.status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            recorder.answered.set()

        def log_message(self, *args: Any) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)  # quick shutdown
    thread.start()
    # The query string stands for the pre-signature, which must reach S3 unchanged.
    recorder.url = f"http://127.0.0.1:{server.server_port}/cfn-response/0f8e7d6c?X-Amz-Signature=abc%2Bdef"
    yield recorder
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def sagemaker() -> Stubber:
    client = boto3.client("sagemaker", region_name=REGION, config=check.CLIENT_CONFIG, **KEYS)
    stubber = Stubber(client)
    stubber.activate()
    return stubber


@dataclass
class LambdaContext:
    """The two things the handler reads from Lambda's context object."""

    remaining_ms: int = 60_000
    log_stream_name: str = "2026/12/01/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def request(
    cloudformation: CloudFormation,
    request_type: str = "Create",
    *,
    arn: str = ARN,
    require_approved: Any = "true",
    stage: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A custom resource request as CloudFormation sends it (properties are strings). ``stage``: the
    optional properties (ExpectedBucket, ExpectedImage, InstanceType); none by default."""
    event = {
        "RequestType": request_type,
        "ResponseURL": cloudformation.url,
        "StackId": STACK_ID,
        "RequestId": "5d7f0b2e-1c3a-4f4e-9e8d-7a6b5c4d3e2f",
        "ResourceType": "Custom::ModelPackageCheck",
        "LogicalResourceId": "ModelPackageCheckCheckA1B2C3D4",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:eu-west-1:111122223333:function:check",
            "ModelPackageArn": arn,
            "RequireApproved": require_approved,
            **(stage or {}),
        },
    }
    if request_type != "Create":
        event["PhysicalResourceId"] = ARN
    if old is not None:
        event["OldResourceProperties"] = {
            "ServiceToken": "arn:aws:lambda:eu-west-1:111122223333:function:check",
            **old,
        }
    return event


def package(
    approval: str | None = "Approved",
    status: str = "Completed",
    url: str = MODEL_URL,
    image: str = IMAGE,
    instance_types: tuple[str, ...] | None = (INSTANCE_TYPE,),
) -> dict:
    """DescribeModelPackage's answer for version 7 of the stage's group. ``instance_types=None``: a
    package registered without SupportedRealtimeInferenceInstanceTypes."""
    answer: dict[str, Any] = {
        "ModelPackageName": "dogbreed-prod",
        "ModelPackageGroupName": "dogbreed-prod",
        "ModelPackageVersion": 7,
        "ModelPackageArn": ARN,
        "CreationTime": datetime(2026, 12, 1, tzinfo=UTC),
        "ModelPackageStatus": status,
        "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "InferenceSpecification": {
            "Containers": [{"Image": image, "ModelDataUrl": url}],
            "SupportedContentTypes": ["application/x-image"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    }  # fmt: skip
    if approval is not None:
        answer["ModelApprovalStatus"] = approval
    if instance_types is not None:
        answer["InferenceSpecification"]["SupportedRealtimeInferenceInstanceTypes"] = list(instance_types)
    return answer


def describes(sagemaker: Stubber, answer: dict, arn: str = ARN) -> Stubber:
    sagemaker.add_response("describe_model_package", answer, {"ModelPackageName": arn})
    return sagemaker


def run(
    cloudformation: CloudFormation, sagemaker: Stubber, event: dict, context: LambdaContext | None = None
) -> dict[str, Any]:
    """Invoke the handler once; the one answer it sent. Every queued SageMaker answer must have been used."""
    assert check.handler(event, context or LambdaContext(), client=sagemaker.client) is None
    sagemaker.assert_no_pending_responses()
    return cloudformation.answer()


# Create


def test_an_approved_package_passes_a_production_stage_and_names_its_artifact(cloudformation, sagemaker):
    answer = run(cloudformation, describes(sagemaker, package("Approved")), request(cloudformation))
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == ARN
    assert answer["Data"] == {
        "Image": IMAGE,
        "ModelDataUrl": MODEL_URL,
        "ArtifactBucket": BUCKET,
        "ArtifactKey": KEY,
        "ApprovalStatus": "Approved",
        "ModelPackageVersion": "7",
    }


def test_a_pending_package_fails_a_production_stage_and_the_reason_says_how_to_fix_it(
    cloudformation, sagemaker
):
    answer = run(
        cloudformation, describes(sagemaker, package("PendingManualApproval")), request(cloudformation)
    )
    assert answer["Status"] == "FAILED"
    reason = answer["Reason"]
    assert f"Model package {ARN} is PendingManualApproval" in reason
    assert "a production stage deploys only Approved packages" in reason
    assert APPROVE in reason and "or promote another, Approved package" in reason
    assert len(reason.encode()) < 1024


REJECTED = f"Model package {ARN} is Rejected: it was rejected, and no stage deploys a rejected package"


@pytest.mark.parametrize("require_approved", ["true", "false"])
def test_a_rejected_package_fails_every_stage(cloudformation, sagemaker, require_approved):
    event = request(cloudformation, require_approved=require_approved)
    answer = run(cloudformation, describes(sagemaker, package("Rejected")), event)
    assert answer["Status"] == "FAILED"
    assert REJECTED in answer["Reason"] and "Promote another package." in answer["Reason"]
    assert APPROVE not in answer["Reason"]  # approving a rejected package is not the way out


def test_a_rejected_package_that_is_not_completed_fails_as_rejected(cloudformation, sagemaker):
    # Waiting for it to complete would not help.
    event = request(cloudformation, require_approved="false")
    answer = run(cloudformation, describes(sagemaker, package("Rejected", status="InProgress")), event)
    assert answer["Status"] == "FAILED"
    assert REJECTED in answer["Reason"] and "Wait for it" not in answer["Reason"]


def test_a_package_without_an_approval_status_fails_a_production_stage(cloudformation, sagemaker):
    answer = run(cloudformation, describes(sagemaker, package(approval=None)), request(cloudformation))
    assert answer["Status"] == "FAILED" and APPROVE in answer["Reason"]


def test_a_development_stage_may_deploy_a_pending_package(cloudformation, sagemaker):
    event = request(cloudformation, require_approved="false")
    answer = run(cloudformation, describes(sagemaker, package("PendingManualApproval")), event)
    assert answer["Status"] == "SUCCESS"
    assert answer["Data"]["ApprovalStatus"] == "PendingManualApproval"
    assert answer["Data"]["ArtifactKey"] == KEY


@pytest.mark.parametrize("status", ["Pending", "InProgress", "Failed", "Deleting"])
@pytest.mark.parametrize("require_approved", ["true", "false"])
def test_a_package_that_is_not_completed_fails_every_stage(
    cloudformation, sagemaker, status, require_approved
):
    event = request(cloudformation, require_approved=require_approved)
    answer = run(cloudformation, describes(sagemaker, package("Approved", status=status)), event)
    assert answer["Status"] == "FAILED"
    assert f"Model package {ARN} is {status}, not Completed" in answer["Reason"]


@pytest.mark.parametrize(
    "url",
    [
        "https://bucket.s3.amazonaws.com/model.tar.gz",  # not an S3 URI
        "s3://bucket",  # no key
        "s3:///model.tar.gz",  # no bucket
        "s3://bucket/models/dogbreed/",  # a prefix (uncompressed model), not the one object to grant
    ],
)
def test_a_model_data_url_that_is_not_one_s3_object_fails_clearly(cloudformation, sagemaker, url):
    answer = run(cloudformation, describes(sagemaker, package(url=url)), request(cloudformation))
    assert answer["Status"] == "FAILED"
    assert f"has ModelDataUrl {url!r}, not s3://bucket/key of one object" in answer["Reason"]


def test_a_key_with_a_fragment_character_is_kept_whole(cloudformation, sagemaker):
    url = f"s3://{BUCKET}/models/v1#2/model.tar.gz"
    answer = run(cloudformation, describes(sagemaker, package(url=url)), request(cloudformation))
    assert answer["Data"]["ArtifactBucket"] == BUCKET
    assert answer["Data"]["ArtifactKey"] == "models/v1#2/model.tar.gz"


@pytest.mark.parametrize(
    ("url", "held"),
    [
        (f"s3://{BUCKET}/models/*/model.tar.gz", "*"),  # the grant would cover every model
        (f"s3://{BUCKET}/models/v?/model.tar.gz", "?"),  # a wildcard, and not what urlsplit keeps
        (f"s3://{BUCKET}/models/${{aws:username}}/model.tar.gz", "${"),  # a policy variable
        ("s3://dogbreed-*/model.tar.gz", "*"),  # the bucket is part of the grant too
    ],
)
def test_an_artifact_that_iam_would_read_as_a_pattern_is_refused(cloudformation, sagemaker, url, held):
    # The Data becomes the model role's grant arn:aws:s3:::bucket/key: it must name one object.
    event = request(cloudformation, require_approved="false")
    answer = run(cloudformation, describes(sagemaker, package(url=url)), event)
    assert answer["Status"] == "FAILED"
    assert answer["Data"] == {}
    reason = answer["Reason"]
    assert f"Model package {ARN} has ModelDataUrl {url!r}, which holds {held}" in reason
    assert "IAM would read it as a wildcard or a policy variable" in reason
    assert "Copy the artifact to a key without *, ? or ${ and register it again" in reason


@pytest.mark.parametrize("value", ["True", "yes", "", None, True])
def test_require_approved_must_be_the_string_cloudformation_passes(cloudformation, sagemaker, value):
    # Before any call (none is queued): a typo must not quietly switch the approval gate off.
    answer = run(cloudformation, sagemaker, request(cloudformation, require_approved=value))
    assert answer["Status"] == "FAILED"
    assert f'ResourceProperties.RequireApproved must be "true" or "false" (got {value!r})' in answer["Reason"]


# The stage can serve the package: its bucket, its image, its instance type (on Create and every Update)

OTHER_BUCKET = "dogbreed-dev-111122223333-eu-west-1"
OTHER_IMAGE = "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.7.0-gpu-py312"
MISMATCHES = {
    "ExpectedBucket": (
        {"url": f"s3://{OTHER_BUCKET}/{KEY}"},
        f"Model package {ARN}'s artifact is in bucket {OTHER_BUCKET}, not this stage's bucket {BUCKET} (the "
        "model role may read only its stage's bucket and key): copy the artifact into "
        f"s3://{BUCKET}/models/... and register it again",
    ),
    "ExpectedImage": (
        {"image": OTHER_IMAGE},
        f"Model package {ARN} pins image {OTHER_IMAGE}, while this stage now names {IMAGE} "
        "(inference_image_tag changed since the package was registered): register the artifact again for "
        "the stage's current image",
    ),
    "InstanceType": (
        {"instance_types": ("ml.g5.xlarge", "ml.g5.2xlarge")},
        f"Model package {ARN} supports real-time inference on ml.g5.xlarge, ml.g5.2xlarge only, not on "
        f"this stage's instance type {INSTANCE_TYPE}: register the artifact again for {INSTANCE_TYPE}",
    ),
}
# A Create, and an Update that asks for nothing new (a rerun, a new ServiceToken): both compare.
SAME_AS_BEFORE = {"ModelPackageArn": ARN, "RequireApproved": "true", **STAGE}


def test_a_package_that_matches_the_stage_passes(cloudformation, sagemaker):
    answer = run(cloudformation, describes(sagemaker, package()), request(cloudformation, stage=STAGE))
    assert answer["Status"] == "SUCCESS"
    assert answer["Data"]["ArtifactBucket"] == BUCKET and answer["Data"]["Image"] == IMAGE


@pytest.mark.parametrize("request_type", ["Create", "Update"])
@pytest.mark.parametrize("name", MISMATCHES)
def test_a_package_the_stage_cannot_serve_fails_on_create_and_on_every_update(
    cloudformation, sagemaker, name, request_type
):
    differs, reason = MISMATCHES[name]
    old = SAME_AS_BEFORE if request_type == "Update" else None
    event = request(cloudformation, request_type, stage=STAGE, old=old)
    answer = run(cloudformation, describes(sagemaker, package(**differs)), event)
    assert answer["Status"] == "FAILED"
    assert reason in answer["Reason"]
    assert answer["PhysicalResourceId"] == ARN


@pytest.mark.parametrize("name", MISMATCHES)
@pytest.mark.parametrize("absent", ["", None])
def test_an_empty_or_absent_stage_property_is_not_checked(cloudformation, sagemaker, name, absent):
    # E.g. a serverless stage has no instance type. The other two properties still match.
    stage = {key: value for key, value in STAGE.items() if key != name}
    if absent is not None:
        stage[name] = absent
    differs, _ = MISMATCHES[name]
    event = request(cloudformation, stage=stage)
    answer = run(cloudformation, describes(sagemaker, package(**differs)), event)
    assert answer["Status"] == "SUCCESS"


@pytest.mark.parametrize("instance_types", [None, ()])
def test_a_package_that_lists_no_instance_types_fits_any(cloudformation, sagemaker, instance_types):
    answer = run(
        cloudformation,
        describes(sagemaker, package(instance_types=instance_types)),
        request(cloudformation, stage=STAGE),
    )
    assert answer["Status"] == "SUCCESS"


@pytest.mark.parametrize("name", MISMATCHES)
def test_a_stage_property_that_is_not_a_string_fails_before_any_call(cloudformation, sagemaker, name):
    answer = run(cloudformation, sagemaker, request(cloudformation, stage={**STAGE, name: ["x"]}))
    assert answer["Status"] == "FAILED"
    assert f"ResourceProperties.{name} must be a string, or absent (got ['x'])" in answer["Reason"]


def test_an_update_that_changes_the_stage_s_image_fails_and_its_rollback_passes(cloudformation, sagemaker):
    # inference_image_tag moved on under a package registered for the old image. The rollback re-applies
    # the old properties, which the package still matches.
    new = {**STAGE, "ExpectedImage": OTHER_IMAGE}
    event = request(cloudformation, "Update", stage=new, old=SAME_AS_BEFORE)
    failed = run(cloudformation, describes(sagemaker, package()), event)
    assert failed["Status"] == "FAILED"
    assert f"pins image {IMAGE}, while this stage now names {OTHER_IMAGE}" in failed["Reason"]

    cloudformation.puts.clear()
    rollback = request(
        cloudformation, "Update", stage=STAGE, old={"ModelPackageArn": ARN, "RequireApproved": "true", **new}
    )
    answer = run(cloudformation, describes(sagemaker, package()), rollback)
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == ARN


# Update: the same package (a new one is a new resource); approval is checked only when newly asked for


@pytest.mark.parametrize("require_approved", ["true", "false"])
def test_an_update_that_asks_for_nothing_new_does_not_fail_on_a_since_rejected_package(
    cloudformation, sagemaker, require_approved
):
    # E.g. the rollback of a failed stack update, or a new ServiceToken: the package served today stays.
    event = request(
        cloudformation,
        "Update",
        require_approved=require_approved,
        old={"ModelPackageArn": ARN, "RequireApproved": require_approved},
    )
    answer = run(cloudformation, describes(sagemaker, package("Rejected")), event)
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == ARN
    assert answer["Data"]["ArtifactKey"] == KEY and answer["Data"]["ApprovalStatus"] == "Rejected"


def test_an_update_that_newly_requires_approval_fails_on_a_pending_package(cloudformation, sagemaker):
    event = request(cloudformation, "Update", old={"ModelPackageArn": ARN, "RequireApproved": "false"})
    answer = run(cloudformation, describes(sagemaker, package("PendingManualApproval")), event)
    assert answer["Status"] == "FAILED"
    assert APPROVE in answer["Reason"]
    assert answer["PhysicalResourceId"] == ARN


def test_the_rollback_of_that_update_is_not_blocked(cloudformation, sagemaker):
    # CloudFormation rolls back by sending the old properties as an Update, the failed ones as "old".
    event = request(
        cloudformation,
        "Update",
        require_approved="false",
        old={"ModelPackageArn": ARN, "RequireApproved": "true"},
    )
    answer = run(cloudformation, describes(sagemaker, package("PendingManualApproval")), event)
    assert answer["Status"] == "SUCCESS"


@pytest.mark.parametrize("require_approved", ["true", "false"])
def test_an_update_to_another_package_checks_it_and_keeps_the_physical_id(
    cloudformation, sagemaker, require_approved
):
    event = request(
        cloudformation,
        "Update",
        arn=OTHER_ARN,
        require_approved=require_approved,
        old={"ModelPackageArn": ARN, "RequireApproved": require_approved},
    )
    answer = run(cloudformation, describes(sagemaker, package("Rejected"), arn=OTHER_ARN), event)
    assert answer["Status"] == "FAILED"
    assert f"{OTHER_ARN} is Rejected: it was rejected" in answer["Reason"]
    assert answer["PhysicalResourceId"] == ARN


def test_an_update_to_another_approved_package_names_its_artifact_under_the_same_physical_id(
    cloudformation, sagemaker
):
    # A new PhysicalResourceId would tell CloudFormation the resource was replaced.
    other_key = "training-output/job-6/output/model.tar.gz"
    event = request(
        cloudformation, "Update", arn=OTHER_ARN, old={"ModelPackageArn": ARN, "RequireApproved": "true"}
    )
    answer = run(
        cloudformation, describes(sagemaker, package(url=f"s3://{BUCKET}/{other_key}"), arn=OTHER_ARN), event
    )
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == ARN
    assert answer["Data"]["ArtifactKey"] == other_key


# Delete


def test_a_delete_answers_success_at_once_without_any_call(cloudformation, sagemaker):
    # Nothing is queued: a call would raise in the Stubber and turn the answer into FAILED. The
    # properties would fail a Create: a Delete must succeed whatever they say.
    stage = {"ExpectedBucket": OTHER_BUCKET, "ExpectedImage": ["not a string"], "InstanceType": "ml.nope"}
    event = request(cloudformation, "Delete", require_approved="maybe", stage=stage)
    answer = run(cloudformation, sagemaker, event, LambdaContext(remaining_ms=0))
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == ARN
    assert answer["Data"] == {}


# Errors: always one answer, with a reason that says what happened


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("AccessDeniedException", "User: arn:aws:sts::111122223333:assumed-role/check is not authorized to "
                                  "perform: sagemaker:DescribeModelPackage"),
        ("ValidationException", f"ModelPackage {ARN} does not exist."),
    ],
)  # fmt: skip
def test_a_sagemaker_error_fails_with_its_code_and_message(cloudformation, sagemaker, code, message):
    sagemaker.add_client_error(
        "describe_model_package", code, message, expected_params={"ModelPackageName": ARN}
    )
    answer = run(cloudformation, sagemaker, request(cloudformation))
    assert answer["Status"] == "FAILED"
    assert answer["Reason"] == f"DescribeModelPackage {ARN} failed: {code}: {message}"
    assert answer["PhysicalResourceId"] == ARN


def test_an_unexpected_answer_is_logged_and_still_answered(cloudformation, sagemaker, caplog):
    answer_without_spec = package()
    del answer_without_spec["InferenceSpecification"]
    with caplog.at_level(logging.INFO):
        answer = run(cloudformation, describes(sagemaker, answer_without_spec), request(cloudformation))
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith("Unexpected KeyError: 'InferenceSpecification'")
    assert "\n" not in answer["Reason"]
    assert any(record.exc_info and record.exc_info[0] is KeyError for record in caplog.records)


def test_a_long_error_becomes_one_line_under_1_kb_and_the_body_stays_under_4096_bytes(
    cloudformation, sagemaker
):
    message = "line one\nline two\t" + "é" * 3000  # multi-byte: cut on bytes, not characters
    sagemaker.add_client_error("describe_model_package", "ValidationException", message)
    run(cloudformation, sagemaker, request(cloudformation))
    put = cloudformation.puts[0]
    reason = put.json()["Reason"]
    assert reason.startswith(f"DescribeModelPackage {ARN} failed: ValidationException: line one line two é")
    assert len(reason.encode()) <= check.MAX_REASON_BYTES and reason.endswith("...")
    assert len(put.body) < 4096


def test_a_call_that_hangs_is_answered_before_the_function_times_out(cloudformation, sagemaker):
    # The describe call blocks until an answer has reached CloudFormation: only the deadline timer can
    # send it. The handler's own SUCCESS afterwards is dropped, so CloudFormation hears exactly once.
    def hang(**_: Any) -> None:
        assert cloudformation.answered.wait(timeout=10), "no answer before the call returned"

    sagemaker.client.meta.events.register("before-parameter-build.sagemaker.DescribeModelPackage", hang)
    context = LambdaContext(remaining_ms=int((check.DEADLINE_MARGIN_SECONDS + 0.2) * 1000))
    answer = run(cloudformation, describes(sagemaker, package()), request(cloudformation), context)
    assert answer["Status"] == "FAILED"
    assert (
        f"The check of model package {ARN} did not finish before the function's timeout" in answer["Reason"]
    )


def test_a_response_that_cannot_be_delivered_is_logged_not_raised(cloudformation, sagemaker, caplog):
    cloudformation.status = 403  # e.g. the pre-signed URL expired
    run(cloudformation, describes(sagemaker, package()), request(cloudformation))
    assert "Could not send the response to CloudFormation" in caplog.text
    assert "HTTP Error 403" in caplog.text


def test_a_response_url_that_is_not_https_is_never_opened(cloudformation, sagemaker, caplog):
    event = request(cloudformation, "Delete")
    event["ResponseURL"] = "file:///etc/passwd"
    assert check.handler(event, LambdaContext(), client=sagemaker.client) is None
    assert cloudformation.puts == []
    assert "ResponseURL is not an https URL (scheme 'file')" in caplog.text


# The wire format CloudFormation reads


def test_the_response_is_a_put_of_the_fields_cloudformation_reads(cloudformation, sagemaker):
    event = request(cloudformation)
    run(cloudformation, describes(sagemaker, package()), event)
    put = cloudformation.puts[0]
    assert put.method == "PUT"
    url = urlsplit(cloudformation.url)
    assert put.path == f"{url.path}?{url.query}"  # the pre-signature reaches S3 unchanged
    # The URL was pre-signed without a content type: cfn-response sends an empty one, and so do we.
    assert put.headers["Content-Type"] == ""
    assert int(put.headers["Content-Length"]) == len(put.body) < 4096
    answer = put.json()
    assert set(answer) == RESPONSE_FIELDS
    assert answer["StackId"] == event["StackId"]
    assert answer["RequestId"] == event["RequestId"]
    assert answer["LogicalResourceId"] == event["LogicalResourceId"]
    assert all(isinstance(value, str) for value in answer["Data"].values())


def test_the_response_url_is_never_logged(cloudformation, sagemaker, caplog):
    with caplog.at_level(logging.INFO):
        run(cloudformation, describes(sagemaker, package()), request(cloudformation))
    assert "Request: " in caplog.text
    assert "X-Amz-Signature" not in caplog.text


# The function's package: what the python3.13 runtime runs it with


def test_the_client_retries_in_botocore_and_is_made_once_per_container(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    check.sagemaker_client.cache_clear()
    try:
        client = check.sagemaker_client()
        assert check.sagemaker_client() is client
        # Three calls in all, the first one included (max_attempts would count only the retries).
        assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
        assert client.meta.config.connect_timeout == 2 and client.meta.config.read_timeout == 6
    finally:
        check.sagemaker_client.cache_clear()


def construct_timeout_seconds() -> int:
    """The check function's ``timeout=Duration.<unit>(N)`` in the construct, read from its source (a synth
    would start jsii for one number)."""
    source = Path(check.__file__).parents[1] / "model_package.py"
    units = {"seconds": 1, "minutes": 60}
    found = [
        keyword.value.args[0].value * units[keyword.value.func.attr]
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.ClassDef) and node.name == "ModelPackageCheck"
        for call in ast.walk(node)
        if isinstance(call, ast.Call) and getattr(call.func, "attr", None) == "Function"
        for keyword in call.keywords
        if keyword.arg == "timeout"
        and isinstance(keyword.value, ast.Call)
        and getattr(keyword.value.func, "attr", None) in units
        and isinstance(keyword.value.args[0], ast.Constant)
    ]
    assert len(found) == 1, "ModelPackageCheck's Function(timeout=Duration.seconds|minutes(N)) not found"
    return found[0]


def test_three_attempts_and_their_backoff_fit_well_before_the_deadline():
    # Worked out from the client's own settings, as botocore spends them: every attempt may wait out
    # its connect and read timeouts, and the backoff before attempt n+1 is up to 2**(n-1) s of jitter
    # plus up to 5 s when the answer carries x-amz-retry-after.
    config = check.CLIENT_CONFIG
    attempts = config.retries["total_max_attempts"]
    calls = attempts * (config.connect_timeout + config.read_timeout)
    backoff = sum(2 ** (n - 1) + 5 for n in range(1, attempts))
    assert check.FUNCTION_TIMEOUT_SECONDS == construct_timeout_seconds() == 60
    before_deadline = check.FUNCTION_TIMEOUT_SECONDS - check.DEADLINE_MARGIN_SECONDS
    assert calls + backoff == check.DESCRIBE_BUDGET_SECONDS == 37  # the figure the comment states
    assert before_deadline == 48
    assert calls + backoff <= before_deadline - 10  # well inside: 10 s to spare at the least
    # The deadline's FAILED answer gets the whole PUT timeout, and 2 s more, before Lambda kills it.
    assert check.DEADLINE_MARGIN_SECONDS >= check.PUT_TIMEOUT_SECONDS + 2


def test_the_module_imports_only_the_standard_library_and_boto3():
    # The directory is the Lambda asset on its own: nothing from this repository or its venv is there.
    tree = ast.parse(Path(check.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import has no package to resolve against in the asset"
            imported.add(node.module.split(".")[0])
    assert imported, "no import found: the parse is broken"
    assert imported - sys.stdlib_module_names <= {"boto3", "botocore"}
