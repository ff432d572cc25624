"""The prediction API's error type: every failure becomes one of these, and one place renders it.

The statuses are the prediction API's table (docs/serving.md, "Prediction API"); a status outside it is a
bug.
Messages are written here or in the validators, never copied from an AWS error or the model's
output, so nothing internal (ARNs, stack traces, account ids) can reach the caller.
"""

from __future__ import annotations

from http import HTTPStatus

# The contract's status table: every response the function returns has one of these.
API_STATUSES = frozenset({200, 400, 413, 415, 429, 502, 503, 504})


class ApiError(Exception):
    """A failure with the HTTP status, a stable machine-readable code and a safe message."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        if status not in API_STATUSES or status == 200:
            raise ValueError(f"status {status} is not an error status of the prediction API")
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def phrase(self) -> str:
        return HTTPStatus(self.status).phrase

    def to_body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def too_large(message: str) -> ApiError:
    return ApiError(413, "image_too_large", message)


def unsupported(code: str, message: str) -> ApiError:
    return ApiError(415, code, message)


# Answers for endpoint failures. The caller learns what happened and whether to retry; the log line
# keeps the AWS error code and the model's status for whoever operates the endpoint.
def throttled() -> ApiError:
    return ApiError(429, "throttled", "the model endpoint is busy; retry after a short wait", retry_after=1)


def model_failed() -> ApiError:
    return ApiError(502, "model_error", "the model failed to process the image")


def endpoint_unavailable() -> ApiError:
    return ApiError(
        503, "endpoint_unavailable", "the model endpoint is unavailable; retry later", retry_after=5
    )


# Retry-After of a 503 model_starting. A component scaled to zero comes back only after SageMaker
# provisions an instance and loads the model, which "takes several minutes" (AWS,
# https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-zero-instances.html; the AWS ML
# blog on scale to zero measured about 5 minutes for an 8B LLM): a retry within a minute cannot find it
# back, while one a minute keeps a caller to a handful of retries during the start and gets its answer
# at most a minute after the model is back. The first request already triggered the scale-out
# (NoCapacityInvocationFailures); the retries only wait for it.
MODEL_STARTING_RETRY_AFTER_SECONDS = 60


def model_starting() -> ApiError:
    return ApiError(
        503,
        "model_starting",
        "the model is starting: this stage scales to zero while idle and takes a few minutes to come "
        "back; retry after the Retry-After seconds",
        retry_after=MODEL_STARTING_RETRY_AFTER_SECONDS,
    )


def endpoint_timeout() -> ApiError:
    return ApiError(504, "endpoint_timeout", "the model endpoint did not answer in time")


def internal_error() -> ApiError:
    # The table has no 500: a failure inside this function is reported like one of the model
    # (the caller's remedy is the same), and the log line says which it was.
    return ApiError(502, "internal_error", "the request could not be completed")
