"""lambda/handler.py when the endpoint fails for real: throttled, broken, busy, down, unknown, slow."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import endpoint_errors
import prediction_request
import pytest
import sample_images as images
from api_errors import ApiError
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from botocore.response import StreamingBody
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
from localdev.local_endpoint import NO_CAPACITY_MESSAGE, LocalEndpoint


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
    monkeypatch.setattr(api, "invoke_endpoint", lambda request: 1 / 0)
    status, body, headers = call(api, {"image": b64(images.jpeg())})
    assert (status, body["error"]["code"]) == (502, "internal_error")
    assert "division" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    # The only record of the bug: the request's log line carries the whole traceback.
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert line["exception"] == "ZeroDivisionError" and line["level"] == "ERROR"
    assert line["traceback"].startswith("Traceback (most recent call last):")
    assert "ZeroDivisionError: division by zero" in line["traceback"]
    assert line["request_id"] == body["request_id"] == headers["x-request-id"]


# --- endpoint_errors: the mapping against the documented table ---------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def _prediction_api_section() -> str:
    text = DOCS.read_text()
    start = text.index("\n## Prediction API")
    return text[start : text.index("\n## ", start + 1)]


def _documented_statuses() -> dict[tuple[int, str], str]:
    """docs/serving.md's status table: ``(status, error.code)`` -> its "when" cell."""
    rows = {}
    for line in _prediction_api_section().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit() and cells[0] != "200":
            for code in re.findall(r"`([a-z_]+)`", cells[1]):
                rows[(int(cells[0]), code)] = cells[2]
    return rows


def _documented_log_fields() -> set[str]:
    section = _prediction_api_section()
    table = section[section.index("| field | meaning |") :]
    return {
        name
        for line in table.splitlines()[2:]
        if line.startswith("|")
        for name in re.findall(r"`([a-z_]+)`", line.split("|")[1])
    }


def _client_error(code: str, message: str = "m", http_status: int = 400, **modeled) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": http_status},
    }
    return ClientError({**response, **modeled}, "InvokeEndpoint")


def _model_error(status: int, first_line: str | None = None) -> ClientError:
    modeled = {"OriginalStatusCode": status}
    if first_line is not None:
        modeled["OriginalMessage"] = first_line + "\nTraceback (most recent call last): ..."
    return _client_error("ModelError", "Received client error", 424, **modeled)


def _model_code(code: str) -> str:
    return json.dumps({"error": {"code": code, "message": "the model's own words"}})


# Each case, and the words of the "when" cell of the table row its answer must be.
DOCUMENTED_FAILURES = {
    "ThrottlingException": (_client_error("ThrottlingException"), "`ThrottlingException`"),
    "no-capacity": (
        _client_error("ValidationError", NO_CAPACITY_MESSAGE),
        '`ValidationError` "Inference Component has no capacity',
    ),
    "no-such-endpoint": (
        _client_error("ValidationError", "Endpoint dog-breeds of account 000000000000 not found."),
        "no such endpoint (`ValidationError`",
    ),
    "ServiceUnavailable": (_client_error("ServiceUnavailable", http_status=503), "`ServiceUnavailable`"),
    "InternalFailure": (_client_error("InternalFailure", http_status=500), "`InternalFailure`"),
    "ModelNotReadyException": (
        _client_error("ModelNotReadyException", http_status=429),
        "`ModelNotReadyException`",
    ),
    "AccessDenied": (_client_error("AccessDeniedException", http_status=403), "access denied"),
    "model-500": (_model_error(500), "`ModelError` with a 500"),
    "model-418": (_model_error(418), "any status not listed here"),
    "model-0": (_model_error(0), "`OriginalStatusCode` 0"),
    "model-408": (_model_error(408), "answered 408/504"),
    "model-504": (_model_error(504), "answered 408/504"),
    "model-503": (_model_error(503), "answered 503"),
    "model-429": (_model_error(429), "answered 429"),
    "model-400": (_model_error(400, _model_code("invalid_image")), "the model could not decode it"),
    "model-400-top-k": (_model_error(400, _model_code("invalid_top_k")), "bad `top_k`"),
    "model-413": (_model_error(413, _model_code("image_too_large")), "(from the model) more pixels"),
    "model-415": (_model_error(415, _model_code("unsupported_image_format")), "HEIC"),
    "read-timeout": (ReadTimeoutError(endpoint_url="https://runtime"), "no answer within the read timeout"),
    "connect-timeout": (ConnectTimeoutError(endpoint_url="https://runtime"), "connect timeout"),
    "connection-refused": (EndpointConnectionError(endpoint_url="https://runtime"), "connection refused"),
}


@pytest.mark.parametrize(("exc", "when"), DOCUMENTED_FAILURES.values(), ids=DOCUMENTED_FAILURES.keys())
def test_each_documented_endpoint_failure_maps_to_its_row_of_the_status_table(exc, when):
    """docs/serving.md's table is what callers and operators read: the mapping and it must not drift."""
    error = endpoint_errors.map_endpoint_error(exc).error
    rows = _documented_statuses()
    assert (error.status, error.code) in rows, f"{error.status} {error.code} is not in the table"
    assert when in rows[(error.status, error.code)], (error.status, error.code)
    # "retry-after on 429 and 503", and the row's own value where it names one.
    assert (error.retry_after is not None) == (error.status in (429, 503))
    named = re.search(r"`retry-after: (\d+)`", rows[(error.status, error.code)])
    if named:
        assert error.retry_after == int(named.group(1))


def test_an_answer_outside_the_contract_maps_to_its_row_of_the_status_table():
    failure = endpoint_errors.invalid_model_response()
    rows = _documented_statuses()
    assert "an answer that is not the contract's JSON" in rows[(failure.error.status, failure.error.code)]
    assert failure.log_fields == {"endpoint_error": "InvalidModelResponse"}


def _stubbed_log_line(api, capsys, add) -> list[str]:
    with Stubber(api.RUNTIME) as stub:
        add(stub)
        call(api, {"image": b64(images.jpeg()), "top_k": 3})
    return list(last_log(capsys))


def test_the_log_line_keeps_its_fields_in_order_and_documents_each_one(capsys):
    """The log line is built in ``handler`` from what ``invoke_endpoint`` returns: Logs Insights queries
    and dashboards read these names, so a field renamed, dropped or left out of the docs is a bug."""
    api = load_handler(f"http://127.0.0.1:{free_port()}")  # never reached: every call is stubbed
    answer = json.dumps(
        {"predictions": [{"breed": "a", "index": 0, "probability": 0.5}], "model": {}}
    ).encode()
    head = ["level", "message", "request_id", "cold_start", "initialization", "event_kind"]
    head += ["image_bytes", "content_type", "top_k"]
    ok = _stubbed_log_line(
        api,
        capsys,
        lambda stub: stub.add_response(
            "invoke_endpoint", {"Body": StreamingBody(io.BytesIO(answer), len(answer))}
        ),
    )
    model = _stubbed_log_line(
        api,
        capsys,
        lambda stub: stub.add_client_error(
            "invoke_endpoint", "ModelError", http_status_code=424, modeled_fields={"OriginalStatusCode": 413}
        ),
    )
    service = _stubbed_log_line(
        api,
        capsys,
        lambda stub: stub.add_client_error("invoke_endpoint", "InternalFailure", http_status_code=500),
    )
    assert ok == [*head, "endpoint_ms", "attempts", "outcome", "status", "latency_ms"]
    tail = ["endpoint_ms", "outcome", "status", "error_code", "latency_ms"]
    assert model == [*head, "attempts", "endpoint_error", "model_status", *tail]
    assert service == [*head, "attempts", "endpoint_error", "endpoint_status", *tail]
    assert set(ok + model + service) <= _documented_log_fields()


def test_invoke_endpoint_returns_a_failure_instead_of_raising_it():
    api = load_handler(f"http://127.0.0.1:{free_port()}")
    request = prediction_request.parse_event({"image": b64(images.jpeg())}, api.SETTINGS.limits)
    with Stubber(api.RUNTIME) as stub:
        stub.add_client_error("invoke_endpoint", "ThrottlingException", http_status_code=400)
        result = api.invoke_endpoint(request)
    assert isinstance(result.answer, ApiError) and result.answer.code == "throttled"
    assert list(result.log_fields) == ["attempts", "endpoint_error", "endpoint_ms"]
    assert result.log_fields["endpoint_error"] == "ThrottlingException"
