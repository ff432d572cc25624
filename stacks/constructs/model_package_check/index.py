"""Deploy-time check of the SageMaker model package a stage serves: a CloudFormation custom resource.

``ResourceProperties`` (CloudFormation passes every property as a string):

* ``ModelPackageArn``: the versioned package the stage's Model is built from.
* ``RequireApproved``: ``"true"`` (a production stage) or ``"false"``.
* ``ExpectedBucket``: the stage's artifact bucket; the package's artifact must be in it.
* ``ExpectedImage``: the image URI the stage's config names; the package must pin exactly it.
* ``InstanceType``: the stage's endpoint instance type; the package must list it among its
  ``SupportedRealtimeInferenceInstanceTypes`` when it lists any.

The last three are optional: absent or ``""`` means "do not check" (a serverless stage has no instance type).
A malformed property fails before the one call the check makes, DescribeModelPackage (at most 3 attempts,
inside the function's timeout: see the time budget below).

The checks, each a FAILED answer with a Reason that says what to do:

* Approval, on a Create: the package must be ``Completed`` and not ``Rejected`` in every stage, and also
  ``Approved`` with ``RequireApproved``. An Update re-checks approval only when it asks for something new
  (see :func:`rechecks`).
* Compatibility, on every Create and every Update: the artifact is one S3 object (``s3://bucket/key``, the
  key free of ``*``, ``?`` and ``${``, which the model role's grant would read as IAM wildcards or policy
  variables), in ``ExpectedBucket``; the image is ``ExpectedImage``; ``InstanceType`` is supported. These
  compare the properties with the package, which does not change, so the rollback of an Update (the old
  properties re-applied) passes exactly as they did when they were deployed.
* Delete makes no call and always succeeds.

``Data`` (``Fn::GetAtt``), all strings: ``Image``, ``ModelDataUrl``, ``ArtifactBucket``, ``ArtifactKey``
(the one object the model role may read), ``ApprovalStatus``, ``ModelPackageVersion``. The
``PhysicalResourceId`` is the package ARN on a Create and never changes on an Update. Every request gets
exactly one answer, also on an error or near the function's timeout: without one CloudFormation waits for
the resource's ServiceTimeout (5 minutes here, an hour by default).

The protocol (request fields, response fields, the 4096-byte body limit):
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-requests.html and
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html

This directory is the Lambda asset on its own: the standard library and boto3/botocore (which the python3.13
runtime ships) only, no import from the repository.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

SUCCESS = "SUCCESS"
FAILED = "FAILED"
APPROVED = "Approved"
REJECTED = "Rejected"
COMPLETED = "Completed"
# The optional properties: absent or "" turns the check off.
OPTIONAL_PROPERTIES = ("ExpectedBucket", "ExpectedImage", "InstanceType")
# In the grant arn:aws:s3:::bucket/key, IAM reads "*" and "?" as wildcards and "${...}" as a policy variable.
GRANT_METACHARACTERS = ("*", "?", "${")

# The time budget. The function's timeout (ModelPackageCheck in stacks/constructs/model_package.py):
FUNCTION_TIMEOUT_SECONDS = 60
# urllib applies it to the connect and to each socket read or write, not to the whole PUT: the body is under
# 4 KB (one write) and the answer a status line, so it cuts a PUT that hangs (not one that trickles).
PUT_TIMEOUT_SECONDS = 10
# The deadline timer answers FAILED this long before the function's timeout, which leaves its PUT the whole
# PUT timeout and 2 s more before Lambda kills the process (a killed function answers nothing). The
# handler's own answer, which starts before the deadline, has the same room.
DEADLINE_MARGIN_SECONDS = PUT_TIMEOUT_SECONDS + 2
# Throttling, 5xx and timeouts are retried by botocore (standard mode, jittered backoff), never by hand.
# total_max_attempts counts the first call too (in standard mode, max_attempts counts only the retries:
# max_attempts 5 meant 6 calls). Both timeouts are per attempt (the read timeout per socket read, and the
# answer is a few KB); DescribeModelPackage usually answers in well under a second.
TOTAL_MAX_ATTEMPTS = 3
CONNECT_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 6
# The worst case of the two backoffs before attempts 2 and 3: up to 1 s and 2 s of jitter (throttling's
# scale; other errors back off 20 times less), each raised by up to 5 s when the answer carries
# x-amz-retry-after (which recent botocore honours).
MAX_BACKOFF_SECONDS = (1 + 5) + (2 + 5)
# The describe call: 3 x (2 + 6) + 13 = 37 s at most, inside the 60 - 12 = 48 s before the deadline.
DESCRIBE_BUDGET_SECONDS = (
    TOTAL_MAX_ATTEMPTS * (CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS) + MAX_BACKOFF_SECONDS
)
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": TOTAL_MAX_ATTEMPTS},
    connect_timeout=CONNECT_TIMEOUT_SECONDS,
    read_timeout=READ_TIMEOUT_SECONDS,
)
# The whole response body may not exceed 4096 bytes; a Reason under 1 KB leaves room for the ids.
# (A success carries no Reason, and its Data is bounded by S3's 1024-byte key and SageMaker's URL length.)
MAX_REASON_BYTES = 1000
# A pre-signed S3 URL is https. Plain http is accepted on the loopback interface only (the tests' server).
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


class CheckFailed(Exception):
    """The request cannot succeed; the message is the Reason CloudFormation shows in the stack events."""


@functools.cache
def sagemaker_client() -> BaseClient:
    """One client per container (warm invocations reuse it), created on first use: a Delete needs none."""
    return boto3.client("sagemaker", config=CLIENT_CONFIG)


def handler(event: dict[str, Any], context: Any, client: BaseClient | None = None) -> None:
    """Lambda entry point. ``client`` replaces :func:`sagemaker_client` (tests pass a stubbed one)."""
    # Never log ResponseURL: it is a pre-signed URL, a credential for writing this request's answer.
    logger.info("Request: %s", json.dumps({k: v for k, v in event.items() if k != "ResponseURL"}))
    reply = Reply(event, default_physical_id(event, context))
    deadline = None
    if event.get("RequestType") != "Delete":  # a Delete makes no call that could hang
        seconds = max(context.get_remaining_time_in_millis() / 1000 - DEADLINE_MARGIN_SECONDS, 0)
        deadline = threading.Timer(seconds, reply.send, (FAILED,), {"reason": timeout_reason(event)})
        deadline.daemon = True
        deadline.start()
    try:
        physical_id, data = check(event, client)
        reply.send(SUCCESS, physical_id=physical_id, data=data)
    except CheckFailed as error:
        reply.send(FAILED, reason=str(error))
    except ClientError as error:
        reply.send(FAILED, reason=client_error_reason(event, error))
    except Exception as error:
        logger.exception("Unexpected error")  # the traceback, in the function's CloudWatch log
        reply.send(
            FAILED, reason=f"Unexpected {type(error).__name__}: {error} (traceback in the function's log)"
        )
    finally:
        if deadline is not None:
            deadline.cancel()


def check(event: dict[str, Any], client: BaseClient | None) -> tuple[str, dict[str, str]]:
    """(PhysicalResourceId, Data) for a request that succeeds; raises otherwise."""
    request_type = event["RequestType"]
    if request_type == "Delete":
        # Nothing to delete, and a check must never block a stack delete or a rollback (which deletes
        # the check it had just created).
        return event["PhysicalResourceId"], {}
    if request_type not in ("Create", "Update"):
        raise CheckFailed(f"Unknown RequestType {request_type!r}")
    properties = event["ResourceProperties"]
    # Every property is read before the call: a malformed one fails without touching SageMaker.
    arn = package_arn(properties)
    require_approved = flag(properties, "RequireApproved")
    bucket, image, instance_type = (optional(properties, name) for name in OPTIONAL_PROPERTIES)
    package = (client or sagemaker_client()).describe_model_package(ModelPackageName=arn)
    if request_type == "Create":
        physical_id, gate = arn, True
    else:
        # The same resource as before: its PhysicalResourceId must not change (a new one would tell
        # CloudFormation the resource was replaced).
        physical_id, gate = (
            event["PhysicalResourceId"],
            rechecks(properties, event.get("OldResourceProperties")),
        )
    if gate:
        check_approval(package, arn, require_approved)
    else:
        status = package.get("ModelApprovalStatus", "without an approval status")
        if status == REJECTED or (require_approved and status != APPROVED):
            logger.warning("%s is %s; not re-checked on an update that asks for nothing new", arn, status)
    data = artifact_data(package, arn)
    check_compatibility(package, data, arn, bucket=bucket, image=image, instance_type=instance_type)
    logger.info("Data: %s", json.dumps(data))
    return physical_id, data


def check_approval(package: dict[str, Any], arn: str, require_approved: bool) -> None:
    """A Create's gate (and an Update's that asks for something new): what the package's state allows."""
    status = package.get("ModelApprovalStatus", "without an approval status")
    if status == REJECTED:  # first: final, where an incomplete package may still complete
        raise CheckFailed(
            f"Model package {arn} is {REJECTED}: it was rejected, and no stage deploys a rejected package, "
            "production or not. Promote another package."
        )
    if package["ModelPackageStatus"] != COMPLETED:
        raise CheckFailed(
            f"Model package {arn} is {package['ModelPackageStatus']}, not {COMPLETED}: SageMaker builds "
            "a model only from a completed package. Wait for it to complete, or promote another package."
        )
    if require_approved and status != APPROVED:
        raise CheckFailed(
            f"Model package {arn} is {status}: a production stage deploys only {APPROVED} packages. "
            f"Approve it (aws sagemaker update-model-package --model-package-arn {arn} "
            f"--model-approval-status {APPROVED}) or promote another, {APPROVED} package."
        )


def check_compatibility(
    package: dict[str, Any],
    data: dict[str, str],
    arn: str,
    *,
    bucket: str,
    image: str,
    instance_type: str,
) -> None:
    """Every Create and Update: the stage can serve the package. The arguments are the stage's
    ExpectedBucket, ExpectedImage and InstanceType; "" skips that check."""
    if bucket and data["ArtifactBucket"] != bucket:
        raise CheckFailed(
            f"Model package {arn}'s artifact is in bucket {data['ArtifactBucket']}, not this stage's bucket "
            f"{bucket} (the model role may read only its stage's bucket and key): copy the artifact into "
            f"s3://{bucket}/models/... and register it again"
        )
    if image and data["Image"] != image:
        raise CheckFailed(
            f"Model package {arn} pins image {data['Image']}, while this stage now names {image} "
            "(inference_image_tag changed since the package was registered): register the artifact again "
            "for the stage's current image"
        )
    supported = package["InferenceSpecification"].get("SupportedRealtimeInferenceInstanceTypes") or []
    if instance_type and supported and instance_type not in supported:
        raise CheckFailed(
            f"Model package {arn} supports real-time inference on {', '.join(supported)} only, not on this "
            f"stage's instance type {instance_type}: register the artifact again for {instance_type}, or "
            "serve the stage on a supported instance type"
        )


def rechecks(properties: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """Whether an Update gates the package's approval as a Create does.

    Only when it asks for something the previous properties did not: another package, or approval newly
    required. A rollback re-applies the old properties as an Update, so a check that re-gated every Update
    would fail the rollback of a deploy that failed on this very check (a stack left UPDATE_ROLLBACK_FAILED),
    or on a package rejected since it was deployed. (The compatibility checks need no such rule: they
    compare the properties with the package, and the old properties passed them before.)
    """
    old = old or {}
    if old.get("ModelPackageArn") != properties.get("ModelPackageArn"):
        return True
    return flag(properties, "RequireApproved") and old.get("RequireApproved") != "true"


def package_arn(properties: dict[str, Any]) -> str:
    arn = properties.get("ModelPackageArn")
    if not isinstance(arn, str) or not arn:
        raise CheckFailed(f"ResourceProperties.ModelPackageArn must be a model package ARN (got {arn!r})")
    return arn


def flag(properties: dict[str, Any], name: str) -> bool:
    # Strict: a typo or an unresolved token must not quietly turn the approval gate off.
    value = properties.get(name)
    if value not in ("true", "false"):
        raise CheckFailed(f'ResourceProperties.{name} must be "true" or "false" (got {value!r})')
    return value == "true"


def optional(properties: dict[str, Any], name: str) -> str:
    """An optional property; "" (also when absent) means "do not check"."""
    value = properties.get(name, "")
    if not isinstance(value, str):
        raise CheckFailed(f"ResourceProperties.{name} must be a string, or absent (got {value!r})")
    return value


def artifact_data(package: dict[str, Any], arn: str) -> dict[str, str]:
    """The resource's attributes (all strings, as Fn::GetAtt returns them)."""
    container = package["InferenceSpecification"]["Containers"][0]
    url = container.get("ModelDataUrl", "")
    bucket, key = split_s3_url(url, arn)
    return {
        # The image the package pins (the stage's DLC when it was registered), for the stack's output.
        "Image": container.get("Image", ""),
        "ModelDataUrl": url,
        "ArtifactBucket": bucket,
        "ArtifactKey": key,
        "ApprovalStatus": package.get("ModelApprovalStatus", ""),
        "ModelPackageVersion": str(package.get("ModelPackageVersion", "")),
    }


def split_s3_url(url: str, arn: str) -> tuple[str, str]:
    # By hand, not urlsplit: an S3 key may hold "#" (and "?", refused below). The grant is for exactly one
    # object, so a prefix (a key ending in "/", an uncompressed model) is refused rather than granted as an
    # object, and so is a bucket or key that IAM would read as a pattern.
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not key or key.endswith("/"):
        raise CheckFailed(f"Model package {arn} has ModelDataUrl {url!r}, not s3://bucket/key of one object")
    found = [text for text in GRANT_METACHARACTERS if text in f"{bucket}/{key}"]
    if found:
        raise CheckFailed(
            f"Model package {arn} has ModelDataUrl {url!r}, which holds {' and '.join(found)}: in the model "
            "role's grant arn:aws:s3:::bucket/key IAM would read it as a wildcard or a policy variable, not "
            "as the one object. Copy the artifact to a key without *, ? or ${ and register it again"
        )
    return bucket, key


def client_error_reason(event: dict[str, Any], error: ClientError) -> str:
    details = error.response.get("Error", {})
    arn = event.get("ResourceProperties", {}).get("ModelPackageArn")
    return f"DescribeModelPackage {arn} failed: {details.get('Code', '?')}: {details.get('Message', error)}"


def timeout_reason(event: dict[str, Any]) -> str:
    arn = event.get("ResourceProperties", {}).get("ModelPackageArn")
    return (
        f"The check of model package {arn} did not finish before the function's timeout "
        "(DescribeModelPackage kept failing or did not answer); see the function's log"
    )


def default_physical_id(event: dict[str, Any], context: Any) -> str:
    """The id a failure answers with. Update and Delete keep the event's; a Create that fails names the
    package (CloudFormation requires a non-empty id, and the Delete it sends for it is answered at once)."""
    arn = event.get("ResourceProperties", {}).get("ModelPackageArn")
    return event.get("PhysicalResourceId") or (
        arn if isinstance(arn, str) and arn else context.log_stream_name
    )


def one_line(text: str, limit: int = MAX_REASON_BYTES) -> str:
    """Whitespace and newlines collapsed (a stack event shows one line), cut to ``limit`` UTF-8 bytes."""
    text = " ".join(text.split())
    encoded = text.encode()
    return text if len(encoded) <= limit else encoded[: limit - 3].decode(errors="ignore") + "..."


class Reply:
    """The answer to one request, sent at most once: by the handler, or by its deadline timer if that
    fires first (the other's later send is then dropped)."""

    def __init__(self, event: dict[str, Any], physical_id: str) -> None:
        self.event = event
        self.physical_id = physical_id
        self._lock = threading.Lock()
        self._sent = False

    def send(
        self,
        status: str,
        *,
        reason: str = "",
        physical_id: str | None = None,
        data: dict[str, str] | None = None,
    ) -> None:
        with self._lock:
            if self._sent:
                logger.warning("Already answered; dropping %s (%s)", status, reason)
                return
            self._sent = True
        body = {
            "Status": status,
            "Reason": one_line(reason) if reason else "See the function's CloudWatch log",
            "PhysicalResourceId": physical_id or self.physical_id,
            "StackId": self.event.get("StackId"),
            "RequestId": self.event.get("RequestId"),
            "LogicalResourceId": self.event.get("LogicalResourceId"),
            "Data": data or {},
        }
        logger.info("Response: %s", json.dumps(body))
        try:
            put(self.event["ResponseURL"], json.dumps(body).encode())
        except Exception:
            # Nothing else can tell CloudFormation; the log is where the operator will look.
            logger.exception("Could not send the response to CloudFormation")


def put(url: str, body: bytes) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS):
        raise ValueError(f"ResponseURL is not an https URL (scheme {parts.scheme!r})")
    # Content-Type "" as cfn-response sends it: the URL was pre-signed without one (urllib would add
    # application/x-www-form-urlencoded if the header were absent).
    # S310 asks that only expected schemes be opened: checked just above.
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": ""})  # noqa: S310
    with urllib.request.urlopen(request, timeout=PUT_TIMEOUT_SECONDS) as answer:  # noqa: S310
        logger.info("CloudFormation answered HTTP %s", answer.status)
