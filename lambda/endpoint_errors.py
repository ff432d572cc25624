"""What a failed SageMaker InvokeEndpoint becomes in the prediction API: the tables and the one mapping.

``map_endpoint_error(exc)`` takes what botocore raised (a ``ClientError`` from the service or the model,
or a ``BotoCoreError`` such as a read timeout or a refused connection) and returns an
:class:`EndpointFailure`: the :class:`ApiError` the caller gets, and the log fields an operator needs to
tell the cases apart. ``invalid_model_response()`` is the one failure botocore cannot see: an answer that
is not the endpoint contract's JSON. The statuses and codes are the prediction API's table
(docs/serving.md, "Prediction API"); tests/serving/test_prediction_api_failures.py checks each documented
row against this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import api_errors
from api_errors import ApiError
from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

# SageMaker's ValidationError when an inference component has zero copies (scaled to zero): "Inference
# Component has no capacity to process this request. ApplicationAutoScaling may be in-progress (if
# configured) or try to increase the capacity by invoking UpdateInferenceComponentRuntimeConfig API."
# (AWS ML blog, "Unlock cost savings with the new scale down to zero feature in SageMaker Inference",
# https://aws.amazon.com/blogs/machine-learning/unlock-cost-savings-with-the-new-scale-down-to-zero-feature-in-amazon-sagemaker-inference/).
# Matched on its subject and "has no capacity", case and spacing aside: the rest of the sentence is
# advice that may be reworded, and other ValidationErrors (no such endpoint or component, a missing
# component header) say nothing about capacity.
_NO_CAPACITY = re.compile(r"\binference\s+component\s+has\s+no\s+capacity\b", re.IGNORECASE)
# Codes the endpoint's handler (inference/inference.py) puts in the first line of an error body.
# Only these are taken from the model's answer; the message is always this function's own.
_MODEL_CLIENT_ERRORS = {
    400: {"invalid_image", "invalid_top_k"},
    413: {"image_too_large"},
    415: {"unsupported_image_format", "unsupported_media_type"},
}
_MODEL_ERROR_MESSAGES = {
    "invalid_image": "the image could not be decoded: it is damaged, truncated or not an image",
    "invalid_top_k": "the model rejected top_k",
    "image_too_large": "the image has more pixels than the model accepts",
    "unsupported_image_format": "the image format is not supported; send JPEG, PNG or WebP",
    "unsupported_media_type": "the image format is not supported; send JPEG, PNG or WebP",
}
_MODEL_BUSY_STATUSES = {
    # 0: SageMaker got no answer from the container within its 60 s invocation limit ("Received
    # server error (0) from primary with message "Your invocation timed out while waiting for a
    # response from container primary...""): the endpoint timed out, the model did not fail.
    0: api_errors.endpoint_timeout,
    429: api_errors.throttled,
    503: api_errors.endpoint_unavailable,
    408: api_errors.endpoint_timeout,
    504: api_errors.endpoint_timeout,
}
_THROTTLING_CODES = {"ThrottlingException", "Throttling", "TooManyRequestsException"}


@dataclass(frozen=True)
class EndpointFailure:
    """A failed endpoint call as the API answers it, and what the request's log line records about it."""

    error: ApiError
    # In log order: ``endpoint_error`` (the AWS error code, the botocore exception's class, or
    # ``NoCapacity`` / ``InvalidModelResponse``), then ``model_status`` for a ModelError or
    # ``endpoint_status`` for the service's own refusals. A key is present only where it means something,
    # even when its value is missing (null), so Logs Insights queries can tell the cases apart.
    log_fields: Mapping[str, Any]


def map_endpoint_error(exc: ClientError | BotoCoreError) -> EndpointFailure:
    """The API's answer to what InvokeEndpoint (or reading its body) raised."""
    if isinstance(exc, ClientError):
        return _client_error(exc.response)
    if isinstance(exc, ReadTimeoutError):
        # The request reached the endpoint and it did not answer in time (never retried, see handler.py).
        return EndpointFailure(api_errors.endpoint_timeout(), {"endpoint_error": "ReadTimeoutError"})
    # ConnectTimeoutError, EndpointConnectionError (nothing answered, after botocore's retries), a reset
    # connection, missing credentials...: nothing the caller can fix; it can only retry later.
    return EndpointFailure(api_errors.endpoint_unavailable(), {"endpoint_error": type(exc).__name__})


def invalid_model_response() -> EndpointFailure:
    """The endpoint answered 200 with something other than the contract's JSON: the model failed."""
    return EndpointFailure(api_errors.model_failed(), {"endpoint_error": "InvalidModelResponse"})


def is_no_capacity(message: Any) -> bool:
    """Whether a ValidationError's message is SageMaker's "inference component has no capacity"."""
    return isinstance(message, str) and _NO_CAPACITY.search(message) is not None


def _client_error(response: Mapping[str, Any]) -> EndpointFailure:
    error = response.get("Error", {})
    code = error.get("Code", "")
    status = response.get("OriginalStatusCode")
    if code == "ModelError":
        return EndpointFailure(
            _model_error(status, response.get("OriginalMessage")),
            {"endpoint_error": code, "model_status": status},
        )
    if code in _THROTTLING_CODES:
        return EndpointFailure(api_errors.throttled(), {"endpoint_error": code})
    endpoint_status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "ValidationError" and is_no_capacity(error.get("Message")):
        # The stage's component is scaled to zero. This failed request is what brings it back: SageMaker
        # counts it in NoCapacityInvocationFailures, whose alarm scales the component out
        # (https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-zero-instances.html).
        return EndpointFailure(
            api_errors.model_starting(), {"endpoint_error": "NoCapacity", "endpoint_status": endpoint_status}
        )
    # ValidationError (no such endpoint: being created, deleted or renamed; no such component, or none
    # named where one is required), ServiceUnavailable, InternalFailure, ModelNotReadyException,
    # AccessDenied...: the caller cannot fix any of them.
    return EndpointFailure(
        api_errors.endpoint_unavailable(),
        {"endpoint_error": code or "ClientError", "endpoint_status": endpoint_status},
    )


def _model_error(status: Any, original_message: Any) -> ApiError:
    """A 400/413/415 from the model is the caller's fault and keeps its status. A busy or slow model
    server (TorchServe answers 503 when its queue is full, 429/408/504 from other servers, status 0
    when SageMaker's invocation limit ran out) keeps its retryable meaning; anything else is the
    model failing: 502."""
    if status in _MODEL_BUSY_STATUSES:
        return _MODEL_BUSY_STATUSES[status]()
    allowed = _MODEL_CLIENT_ERRORS.get(status) if isinstance(status, int) else None
    if not allowed:
        return api_errors.model_failed()
    code = _first_line_code(original_message)
    if code not in allowed:
        code = sorted(allowed)[0]
    return ApiError(status, code, _MODEL_ERROR_MESSAGES[code])


def _first_line_code(original_message: Any) -> str | None:
    # The toolkit sends "<message>\n<traceback>"; our handler's message is one line of JSON.
    if not isinstance(original_message, str):
        return None
    try:
        document = json.loads(original_message.split("\n", 1)[0])
        code = document["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None
