"""lambda/handler.py when the endpoint fails for real: throttled, broken, busy, down, unknown, slow."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest
import sample_images as images
from botocore.stub import Stubber
from serving_helpers import (
    ENDPOINT_NAME,
    b64,
    call,
    free_port,
    last_log,
    load_handler,
    wait_until_every_slot_is_taken,
)

from inference import inference as handlers
from inference.local_endpoint import LocalEndpoint


@pytest.fixture(scope="module")
def api(endpoint):
    return load_handler(endpoint.url)


def test_endpoint_throttling_is_429(artifact_dir):
    with LocalEndpoint(artifact_dir, name=ENDPOINT_NAME, max_concurrency=1, delay_seconds=1.5) as busy:
        api = load_handler(busy.url)
        first = threading.Thread(target=api.handler, args=({"image": b64(images.jpeg())}, None))
        first.start()
        wait_until_every_slot_is_taken(busy)  # the first request now holds the only slot
        status, body, headers = call(api, {"image": b64(images.jpeg())})
        first.join()
    assert (status, body["error"]["code"]) == (429, "throttled")
    assert headers["retry-after"] == "1"


def _failing(predict_error: Exception | None = None, output: str | None = None) -> SimpleNamespace:
    """The real handler functions, with predict_fn or output_fn failing the way a broken model does."""

    def predict_fn(request, model, context=None):
        if predict_error is not None:
            raise predict_error
        return handlers.predict_fn(request, model, context)

    def output_fn(prediction, accept, context=None):
        return (
            (output, "application/json")
            if output is not None
            else handlers.output_fn(prediction, accept, context)
        )

    return SimpleNamespace(
        model_fn=handlers.model_fn, input_fn=handlers.input_fn, predict_fn=predict_fn, output_fn=output_fn
    )


@pytest.mark.parametrize(
    "broken",
    [
        _failing(predict_error=RuntimeError("CUDA error: an illegal memory access was encountered")),
        _failing(output='{"predictions": "not a list"}'),
        _failing(output="<html>502</html>"),
        _failing(output='{"predictions": [{"breed": "x", "index": 0, "probability": NaN}], "model": {}}'),
        _failing(predict_error=handlers.RequestError(406, "not_acceptable", "no")),
    ],
    ids=["model-raises", "malformed-answer", "not-json", "nan", "unexpected-4xx"],
)
def test_a_failing_model_is_502_without_its_error_text(artifact_dir, broken, capsys):
    with LocalEndpoint(artifact_dir, name=ENDPOINT_NAME, handlers=broken) as failing:
        api = load_handler(failing.url)
        status, body, _ = call(api, {"image": b64(images.jpeg())})
    assert (status, body["error"]["code"]) == (502, "model_error")
    assert "CUDA" not in json.dumps(body)
    assert last_log(capsys)["level"] == "ERROR"


@pytest.mark.parametrize(
    ("model_status", "status", "code"),
    [(503, 503, "endpoint_unavailable"), (429, 429, "throttled"), (504, 504, "endpoint_timeout")],
)
def test_a_busy_model_server_keeps_its_retryable_status(artifact_dir, model_status, status, code, capsys):
    busy = _failing(predict_error=handlers.RequestError(model_status, "busy", "queue full"))
    with LocalEndpoint(artifact_dir, name=ENDPOINT_NAME, handlers=busy) as failing:
        api = load_handler(failing.url)
        answer = call(api, {"image": b64(images.jpeg())})
    assert (answer[0], answer[1]["error"]["code"]) == (status, code)
    assert last_log(capsys)["model_status"] == model_status


def test_endpoint_down_is_503(capsys):
    api = load_handler(f"http://127.0.0.1:{free_port()}", ENDPOINT_MAX_ATTEMPTS="2")
    status, body, headers = call(api, {"image": b64(images.jpeg())})
    assert (status, body["error"]["code"]) == (503, "endpoint_unavailable")
    assert headers["retry-after"]
    assert last_log(capsys)["endpoint_error"] == "EndpointConnectionError"


def test_unknown_endpoint_name_is_503(endpoint, capsys):
    api = load_handler(endpoint.url, ENDPOINT_NAME="retired-endpoint")
    status, body, _ = call(api, {"image": b64(images.jpeg())})
    assert (status, body["error"]["code"]) == (503, "endpoint_unavailable")
    assert "retired-endpoint" not in json.dumps(body)
    assert last_log(capsys)["endpoint_error"] == "ValidationError"


def test_slow_endpoint_beyond_the_read_timeout_is_504(artifact_dir, capsys):
    with LocalEndpoint(artifact_dir, name=ENDPOINT_NAME, delay_seconds=2.0) as slow:
        api = load_handler(slow.url, ENDPOINT_READ_TIMEOUT_SECONDS="0.5")
        started = time.perf_counter()
        status, body, _ = call(api, {"image": b64(images.jpeg())})
        elapsed = time.perf_counter() - started
    assert (status, body["error"]["code"]) == (504, "endpoint_timeout")
    assert elapsed < 1.9  # gave up at the read timeout, did not wait for the model
    assert last_log(capsys)["endpoint_error"] == "ReadTimeoutError"


def _slow_model(seconds: float, received: list) -> SimpleNamespace:
    """The real handlers, with a model that takes ``seconds`` and records every request it gets."""

    def predict_fn(request, model, context=None):
        received.append(time.monotonic())
        time.sleep(seconds)
        return handlers.predict_fn(request, model, context)

    return SimpleNamespace(
        model_fn=handlers.model_fn,
        input_fn=handlers.input_fn,
        predict_fn=predict_fn,
        output_fn=handlers.output_fn,
    )


def test_a_read_timeout_is_not_retried_into_the_slow_endpoint(artifact_dir, capsys):
    """botocore's standard mode would send the request again (and again): each copy is more work for an
    endpoint that is already too slow. Throttling and connection errors are still retried (above)."""
    received: list[float] = []
    with LocalEndpoint(artifact_dir, name=ENDPOINT_NAME, handlers=_slow_model(1.5, received)) as slow:
        api = load_handler(slow.url, ENDPOINT_READ_TIMEOUT_SECONDS="0.5", ENDPOINT_MAX_ATTEMPTS="3")
        status, body, _ = call(api, {"image": b64(images.jpeg())})
        time.sleep(1.0)  # a retry would have arrived by now (botocore's backoff is under a second here)
    assert (status, body["error"]["code"]) == (504, "endpoint_timeout")
    assert len(received) == 1
    log = last_log(capsys)
    assert log["endpoint_error"] == "ReadTimeoutError"


def test_a_connection_error_is_still_retried(capsys):
    api = load_handler(f"http://127.0.0.1:{free_port()}", ENDPOINT_MAX_ATTEMPTS="3")
    calls: list[int] = []
    api.RUNTIME.meta.events.register(
        "before-send.sagemaker-runtime.InvokeEndpoint", lambda **_: calls.append(1)
    )
    status, _, _ = call(api, {"image": b64(images.jpeg())})
    assert status == 503
    assert len(calls) == 3


def test_a_model_beyond_sagemakers_invocation_limit_is_504(artifact_dir, capsys):
    """SageMaker gives up on the container after 60 s: a ModelError with OriginalStatusCode 0."""
    with LocalEndpoint(
        artifact_dir, name=ENDPOINT_NAME, delay_seconds=1.0, invocation_timeout_seconds=0.3
    ) as slow:
        api = load_handler(slow.url)
        status, body, _ = call(api, {"image": b64(images.jpeg())})
    assert (status, body["error"]["code"]) == (504, "endpoint_timeout")
    log = last_log(capsys)
    assert (log["endpoint_error"], log["model_status"]) == ("ModelError", 0)


@pytest.mark.parametrize(
    ("code", "http_status", "expected"),
    [
        ("ServiceUnavailable", 503, 503),
        ("InternalFailure", 500, 503),
        ("ModelNotReadyException", 429, 503),
        ("AccessDeniedException", 403, 503),
        ("ThrottlingException", 400, 429),
    ],
)
def test_service_side_errors_that_cannot_be_produced_locally(endpoint, code, http_status, expected):
    """Stubbed: these come from SageMaker's front end, which the local endpoint does not model."""
    api = load_handler(endpoint.url)
    with Stubber(api.RUNTIME) as stub:
        stub.add_client_error(
            "invoke_endpoint",
            service_error_code=code,
            service_message="arn:aws:sagemaker:us-east-1:123456789012:endpoint/x is broken",
            http_status_code=http_status,
        )
        status, body, _ = call(api, {"image": b64(images.jpeg())})
    assert status == expected
    assert "123456789012" not in json.dumps(body)


def test_an_unexpected_bug_is_still_a_table_answer_and_its_traceback_is_logged(api, monkeypatch, capsys):
    monkeypatch.setattr(api, "invoke_endpoint", lambda request, log: 1 / 0)
    status, body, headers = call(api, {"image": b64(images.jpeg())})
    assert (status, body["error"]["code"]) == (502, "internal_error")
    assert "division" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    # The only record of the bug: the request's log line carries the whole traceback.
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert line["exception"] == "ZeroDivisionError" and line["level"] == "ERROR"
    assert line["traceback"].startswith("Traceback (most recent call last):")
    assert "ZeroDivisionError: division by zero" in line["traceback"]
    assert line["request_id"] == body["request_id"] == headers["x-request-id"]
