"""Prediction API: validates a request, calls the SageMaker endpoint, answers with the contract's table.

``handler(event, context)`` reads: parse and validate the event (``prediction_request``), invoke the
endpoint (``invoke_endpoint``, which returns an :class:`EndpointCall`: the success body or the error,
and the call's log fields), shape the response. What a SageMaker failure becomes is ``endpoint_errors``.
Every failure is an ``ApiError`` and one function renders it; every response and every log line carries
the request id, and the log line is built in ``handler`` alone from the values the steps return.

Environment (set by the CDK stack; names are part of its contract):

* ``ENDPOINT_NAME`` (required): the SageMaker endpoint this function may invoke.
* ``INFERENCE_COMPONENT_NAME`` (optional): the inference component to invoke on that endpoint, for a
  stage that serves the model as one (an endpoint that scales to zero copies while idle). Every
  InvokeEndpoint then names it (``InferenceComponentName``, header
  ``X-Amzn-SageMaker-Inference-Component``); unset or empty: the endpoint's production variant.
  While the component has no copies the answer is 503 ``model_starting`` with ``Retry-After``.
* ``ENDPOINT_READ_TIMEOUT_SECONDS`` (default 10): socket read timeout for one attempt.
* ``ENDPOINT_MAX_ATTEMPTS`` (default 2): attempts in botocore's "standard" retry mode, first one
  included (throttling, 5xx and connection errors are retried with jittered backoff; a read timeout is
  not, see ``build_runtime_client``). The function's own timeout must exceed attempts x (connect + read
  timeout) plus backoff.
* ``MAX_IMAGE_BYTES`` (default 4 MiB): the largest decoded image accepted. A Function URL body is
  at most 6 MB and base64 adds a third, so about 4.5 MB is the ceiling anyway.
* ``MAX_TOP_K`` (default 20), ``ENDPOINT_CONNECT_TIMEOUT_SECONDS`` (default 2): optional.

Only botocore (what boto3 is built on; the Lambda runtime ships both) and the standard library, imported
once at module level with the client: a cold start pays for them once and warm invocations reuse the
client's connection pool. ``botocore.session`` rather than ``boto3``: the boto3 layer (and the s3transfer
it imports) adds import time and nothing this one API call needs (docs/benchmarks.md, Lambda).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import api_errors
import botocore.session
import endpoint_errors
from api_errors import ApiError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError
from prediction_request import Limits, PredictionRequest, event_kind, parse_event

DEFAULT_TOP_K = 5
# SageMaker endpoint names: 1-63 chars, ^[a-zA-Z0-9](-*[a-zA-Z0-9])* (botocore's service model).
# Checked with fullmatch and len: "$" also matches before a trailing newline, and "-*" is unbounded.
_ENDPOINT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
_ENDPOINT_NAME_MAX_LENGTH = 63
# InvokeEndpoint's InferenceComponentName: at most 63 chars, ^[a-zA-Z0-9]([\-a-zA-Z0-9]*[a-zA-Z0-9])?$
# (botocore's sagemaker-runtime model), the same strings as the endpoint pattern above (letters, digits
# and hyphens, a letter or digit at each end), so it is checked with the same regex and limit.
_INFERENCE_COMPONENT_NAME = _ENDPOINT_NAME
_RESPONSE_HEADERS = {
    "content-type": "application/json",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}


class ConfigurationError(RuntimeError):
    """A missing or invalid environment variable; raised at import, so the function fails to init."""


@dataclass(frozen=True)
class Settings:
    endpoint_name: str
    # None: the endpoint serves a production variant, and InvokeEndpoint names no component.
    inference_component_name: str | None
    read_timeout_seconds: float
    connect_timeout_seconds: float
    max_attempts: int
    limits: Limits
    # "on-demand", "provisioned-concurrency" or "snap-start", set by Lambda for the environment's life:
    # a cold start a caller waited for is cold_start with "on-demand", the sign that provisioned
    # concurrency is sized too small.
    initialization_type: str

    @classmethod
    def from_environment(cls, env: dict[str, str] | os._Environ[str] = os.environ) -> Settings:
        name = env.get("ENDPOINT_NAME", "")
        if len(name) > _ENDPOINT_NAME_MAX_LENGTH or not _ENDPOINT_NAME.fullmatch(name):
            raise ConfigurationError("ENDPOINT_NAME must be set to a SageMaker endpoint name")
        component = env.get("INFERENCE_COMPONENT_NAME") or None
        if component is not None and (
            len(component) > _ENDPOINT_NAME_MAX_LENGTH or not _INFERENCE_COMPONENT_NAME.fullmatch(component)
        ):
            raise ConfigurationError(
                "INFERENCE_COMPONENT_NAME must be a SageMaker inference component name or unset"
            )
        return cls(
            endpoint_name=name,
            inference_component_name=component,
            read_timeout_seconds=_number(env, "ENDPOINT_READ_TIMEOUT_SECONDS", 10.0, 0.1, 600.0),
            connect_timeout_seconds=_number(env, "ENDPOINT_CONNECT_TIMEOUT_SECONDS", 2.0, 0.1, 60.0),
            max_attempts=int(_number(env, "ENDPOINT_MAX_ATTEMPTS", 2, 1, 10, integer=True)),
            limits=Limits(
                max_image_bytes=int(
                    _number(env, "MAX_IMAGE_BYTES", 4 * 1024 * 1024, 1024, 6 * 1024 * 1024, True)
                ),
                max_top_k=int(_number(env, "MAX_TOP_K", 20, 1, 1000, integer=True)),
                default_top_k=DEFAULT_TOP_K,
            ),
            initialization_type=env.get("AWS_LAMBDA_INITIALIZATION_TYPE", "unknown"),
        )


def _number(env: Any, key: str, default: float, low: float, high: float, integer: bool = False) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ConfigurationError(
            f"{key} must be {'an integer' if integer else 'a number'}, got {raw!r}"
        ) from None
    if not low <= value <= high:
        raise ConfigurationError(f"{key} must be between {low:g} and {high:g}, got {raw!r}")
    return value


def build_runtime_client(settings: Settings) -> Any:
    """The one sagemaker-runtime client: explicit timeouts, bounded standard-mode retries, and no retry
    after a read timeout.

    Standard mode retries ``ReadTimeoutError`` like any transient error, but a request that timed out on
    read reached the endpoint, which may still be working on it: resending it adds work to an endpoint
    that is already too slow, up to ``max_attempts`` times. Throttling, 5xx answers and connection errors
    (nothing was processed) keep botocore's retries.
    """
    config = Config(
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
        tcp_keepalive=True,
    )
    client = botocore.session.get_session().create_client("sagemaker-runtime", config=config)
    # botocore asks every "needs-retry" handler, the operation's own before the service-wide retry handler
    # (the emitter calls more specific events first), and an exception a handler raises ends the attempt
    # loop and reaches the caller. The retry handler is never asked, so the read timeout is final.
    client.meta.events.register("needs-retry.sagemaker-runtime.InvokeEndpoint", _final_read_timeout)
    return client


def _final_read_timeout(caught_exception: Exception | None = None, **_: Any) -> None:
    if isinstance(caught_exception, ReadTimeoutError):
        raise caught_exception


SETTINGS = Settings.from_environment()
RUNTIME = build_runtime_client(SETTINGS)
_cold_start = True


@dataclass(frozen=True)
class EndpointCall:
    """One InvokeEndpoint, as :func:`invoke_endpoint` returns it."""

    # The API's success body (predictions and model, without request_id), or the error to answer with.
    answer: dict[str, Any] | ApiError
    # What the request's log line records about the call, in log order: attempts (when the service
    # answered), endpoint_ms, and on failure endpoint_error plus model_status or endpoint_status.
    log_fields: Mapping[str, Any]


def handler(event: Any, context: Any) -> dict[str, Any]:
    global _cold_start
    started = time.perf_counter()
    request_id = getattr(context, "aws_request_id", None) or str(uuid.uuid4())
    # This request's log line: only this function adds to it, from what each step returns.
    log: dict[str, Any] = {
        "request_id": request_id,
        "cold_start": _cold_start,
        "initialization": SETTINGS.initialization_type,
        "event_kind": event_kind(event),
    }
    _cold_start = False
    try:
        request = parse_event(event, SETTINGS.limits)
        log.update(image_bytes=len(request.image), content_type=request.content_type, top_k=request.top_k)
        call = invoke_endpoint(request)
        log.update(call.log_fields)
        if isinstance(call.answer, ApiError):
            response = _error_response(call.answer, request_id)
            log.update(_error_log_fields(call.answer))
        else:
            response = _respond(200, {**call.answer, "request_id": request_id}, request_id)
            log.update(outcome="ok", status=200)
    except ApiError as error:  # the request itself was refused; the endpoint was not called
        response = _error_response(error, request_id)
        log.update(_error_log_fields(error))
    except Exception as exc:
        # A bug here must still answer in the table's shape, without the exception's text.
        error = api_errors.internal_error()
        response = _error_response(error, request_id)
        # The traceback goes to the log (the one place an operator can find the bug), never the response.
        log.update(_error_log_fields(error), exception=type(exc).__name__, traceback=traceback.format_exc())
    log["latency_ms"] = _ms_since(started)
    _log(log)
    return response


def invoke_endpoint(request: PredictionRequest) -> EndpointCall:
    """Call the endpoint once (botocore's retries inside); what it answered, failures included.

    Only a bug raises: every botocore error becomes an :class:`ApiError` in the result
    (``endpoint_errors``).
    """
    arguments: dict[str, Any] = {
        "EndpointName": SETTINGS.endpoint_name,
        "ContentType": request.content_type,
        "Accept": "application/json",
        "CustomAttributes": f"top_k={request.top_k}",
        "Body": request.image,
    }
    if SETTINGS.inference_component_name is not None:
        arguments["InferenceComponentName"] = SETTINGS.inference_component_name
    started = time.perf_counter()
    try:
        response = RUNTIME.invoke_endpoint(**arguments)
        payload = response["Body"].read()
    except (ClientError, BotoCoreError) as exc:  # the service's error; a timeout, a refused connection...
        endpoint_ms = _ms_since(started)
        failure = endpoint_errors.map_endpoint_error(exc)
        # Where the service answered, its metadata counts botocore's attempts; a transport error has none.
        attempts = {"attempts": _attempts(exc.response)} if isinstance(exc, ClientError) else {}
        return EndpointCall(failure.error, {**attempts, **failure.log_fields, "endpoint_ms": endpoint_ms})
    call_fields = {"endpoint_ms": _ms_since(started), "attempts": _attempts(response)}
    body = _success_body(payload, request.top_k, response.get("InvokedProductionVariant"))
    if body is None:
        failure = endpoint_errors.invalid_model_response()
        return EndpointCall(failure.error, {**call_fields, **failure.log_fields})
    return EndpointCall(body, call_fields)


def _success_body(payload: bytes, top_k: int, variant: Any) -> dict[str, Any] | None:
    """The endpoint's answer as the API's success body; None if it is not the endpoint contract's JSON."""
    try:
        document = json.loads(payload)
        predictions = [_prediction(entry) for entry in document["predictions"]]
        model = document.get("model", {})
        if not isinstance(model, dict):
            raise TypeError("model is not an object")
    except (ValueError, KeyError, TypeError):
        return None
    predictions.sort(key=lambda entry: entry["probability"], reverse=True)
    model_info = {key: model[key] for key in ("arch", "num_classes", "image_size", "version") if key in model}
    if isinstance(variant, str):
        model_info["variant"] = variant
    return {"predictions": predictions[:top_k], "model": model_info}


def _prediction(entry: Any) -> dict[str, Any]:
    breed, index, probability = entry["breed"], entry["index"], entry["probability"]
    if not isinstance(breed, str) or not isinstance(index, int) or not isinstance(probability, int | float):
        raise TypeError("malformed prediction")
    if not 0.0 <= probability <= 1.0:  # also false for NaN, which would make the body invalid JSON
        raise ValueError("probability out of range")
    return {"breed": breed, "index": index, "probability": float(probability)}


def _attempts(response: Mapping[str, Any]) -> int:
    return int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0)) + 1


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _error_log_fields(error: ApiError) -> dict[str, Any]:
    # "rejected": the caller's request was at fault (4xx other than 429); "failed": this side's (5xx, 429).
    outcome = "rejected" if error.status in (400, 413, 415) else "failed"
    return {"outcome": outcome, "status": error.status, "error_code": error.code}


def _error_response(error: ApiError, request_id: str) -> dict[str, Any]:
    headers = {"retry-after": str(error.retry_after)} if error.retry_after else {}
    return _respond(error.status, {**error.to_body(), "request_id": request_id}, request_id, headers)


def _respond(
    status: int, body: dict[str, Any], request_id: str, headers: dict[str, str] | None = None
) -> dict:
    return {
        "statusCode": status,
        "headers": {**_RESPONSE_HEADERS, "x-request-id": request_id, **(headers or {})},
        "body": json.dumps(body),
    }


def _log(fields: dict[str, Any]) -> None:
    """One JSON object per line on stdout, which Lambda ships to CloudWatch Logs. Never the image."""
    fields = {
        "level": "ERROR" if fields.get("status", 500) >= 500 else "INFO",
        "message": "request",
        **fields,
    }
    sys.stdout.write(json.dumps(fields, default=str) + "\n")
    sys.stdout.flush()
