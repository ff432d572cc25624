"""lambda/handler.py against the local endpoint through real boto3: each event kind, 200 and 4xx rows.

Every test here runs twice: against the in-process server and against the DLC's real TorchServe + toolkit,
so the status table of the API is proven on the stack production runs.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import prediction_request
import pytest
import sample_images as images
from serving_helpers import ENDPOINT_NAME, b64, call, json_event, last_log, load_handler, url_event

from localdev.local_endpoint import LocalEndpoint

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "lambda"


@pytest.fixture(scope="module", params=["inprocess", "torchserve"])
def endpoint(request, artifact_dir):
    if request.param == "torchserve":
        yield request.getfixturevalue("torchserve_endpoint")  # one per session: its start is slow
        return
    with LocalEndpoint(artifact_dir, name=ENDPOINT_NAME) as running:
        yield running


@pytest.fixture(scope="module")
def api(endpoint):
    return load_handler(endpoint.url)


# --- 200: each event kind ---------------------------------------------------------------------


def assert_predictions(body: dict, top_k: int, class_names: list[str]) -> None:
    predictions = body["predictions"]
    assert len(predictions) == top_k
    assert [p["probability"] for p in predictions] == sorted(
        (p["probability"] for p in predictions), reverse=True
    )
    assert all(class_names[p["index"]] == p["breed"] for p in predictions)
    assert body["model"]["arch"] == "resnet18" and body["model"]["variant"] == "AllTraffic"


@pytest.mark.parametrize(
    ("content_type", "make"),
    [("image/jpeg", images.jpeg), ("image/png", images.png_rgba), ("image/webp", images.webp)],
)
def test_function_url_raw_image_body(api, class_names, content_type, make):
    status, body, _ = call(api, url_event(make(), content_type))
    assert status == 200
    assert_predictions(body, 5, class_names)


def test_function_url_json_body(api, class_names):
    status, body, _ = call(api, json_event({"image": b64(images.jpeg()), "top_k": 3}))
    assert status == 200
    assert_predictions(body, 3, class_names)


def test_function_url_base64_encoded_json_body(api, class_names):
    event = json_event({"image": b64(images.png_grayscale()), "top_k": 2})
    event.update(body=b64(event["body"].encode()), isBase64Encoded=True)
    status, body, _ = call(api, event)
    assert status == 200
    assert_predictions(body, 2, class_names)


def test_top_k_as_query_parameter(api, class_names):
    status, body, _ = call(api, url_event(images.jpeg(), "image/jpeg", {"top_k": "2"}))
    assert status == 200
    assert_predictions(body, 2, class_names)


def test_direct_invocation(api, class_names):
    status, body, _ = call(api, {"image": b64(images.jpeg_cmyk()), "top_k": 4})
    assert status == 200
    assert_predictions(body, 4, class_names)


def test_direct_invocation_accepts_data_urls_and_wrapped_base64(api, class_names):
    encoded = base64.encodebytes(images.jpeg()).decode()  # 76-column lines, like `base64` prints
    status, body, _ = call(api, {"image": "data:image/jpeg;base64," + encoded})
    assert status == 200
    assert_predictions(body, 5, class_names)


def test_served_answer_equals_the_endpoint_answer(api, endpoint):
    data = images.webp()
    _, body, _ = call(api, {"image": b64(data), "top_k": 3})
    direct = endpoint.toolkit.invoke(
        data, {"Content-Type": "image/webp", "X-Amzn-SageMaker-Custom-Attributes": "top_k=3"}
    )
    assert body["predictions"] == json.loads(direct.body)["predictions"]


def test_request_id_is_generated_without_a_lambda_context(api):
    response = api.handler({"image": b64(images.jpeg())}, None)
    assert response["statusCode"] == 200
    assert len(response["headers"]["x-request-id"]) == 36


def test_one_json_log_line_per_request_without_image_bytes(api, capsys):
    data = images.jpeg()
    capsys.readouterr()
    call(api, {"image": b64(data), "top_k": 2})
    output = capsys.readouterr().out
    assert len(output.splitlines()) == 1
    log = json.loads(output)
    assert log["request_id"] == "req-1234" and log["outcome"] == "ok" and log["status"] == 200
    assert log["latency_ms"] >= log["endpoint_ms"] > 0
    assert log["image_bytes"] == len(data) and log["top_k"] == 2 and log["event_kind"] == "direct"
    assert b64(data)[:40] not in output


def test_the_log_says_whether_a_caller_waited_for_the_cold_start(endpoint, capsys):
    """Provisioned concurrency runs the import before traffic: only an on-demand cold start cost a caller."""
    for initialization in ("provisioned-concurrency", "on-demand"):
        api = load_handler(endpoint.url, AWS_LAMBDA_INITIALIZATION_TYPE=initialization)
        capsys.readouterr()
        call(api, {"image": b64(images.jpeg())})
        call(api, {"image": b64(images.jpeg())})
        first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
        assert (first["cold_start"], first["initialization"]) == (True, initialization)
        assert (second["cold_start"], second["initialization"]) == (False, initialization)


# --- 400 / 413 / 415: validated before the endpoint, or answered by the model -----------------


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (
            url_event(b"", "application/json") | {"body": "{not json", "isBase64Encoded": False},
            "invalid_json",
        ),
        (url_event(b"", "application/json") | {"body": "[1, 2]", "isBase64Encoded": False}, "invalid_json"),
        ({"image": "not base64 at all!"}, "invalid_base64"),
        ({"image": "https://example.com/dog.jpg"}, "invalid_base64"),
        ({"top_k": 3}, "missing_image"),
        ({"image": ""}, "missing_image"),
        ({"image": 12345}, "invalid_image"),
        ({"image": b64(b"just some text, not an image")}, "invalid_image"),
        ({"image": b64(images.jpeg()), "top_k": 0}, "invalid_top_k"),
        ({"image": b64(images.jpeg()), "top_k": 21}, "invalid_top_k"),
        ({"image": b64(images.jpeg()), "top_k": "three"}, "invalid_top_k"),
        ({"image": b64(images.jpeg()), "top_k": True}, "invalid_top_k"),
        ({"image": b64(images.jpeg()), "top_k": 2.5}, "invalid_top_k"),
        (url_event(images.jpeg(), "image/jpeg", {"top_k": "-1"}), "invalid_top_k"),
        (json_event({"image": b64(images.jpeg()), "top_k": 2}, {"top_k": "3"}), "invalid_top_k"),
        (url_event(images.jpeg(), "image/jpeg", method="GET"), "method_not_allowed"),
        (url_event(images.jpeg(), "image/jpeg") | {"isBase64Encoded": False}, "invalid_body"),
        (url_event(images.jpeg(), "image/jpeg") | {"body": None}, "missing_image"),
        (["not", "an", "object"], "invalid_event"),
        ({"headers": "x", "body": "y"}, "method_not_allowed"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_malformed_requests_are_400_before_the_endpoint(api, event, code, capsys):
    status, body, _ = call(api, event)
    assert (status, body["error"]["code"]) == (400, code)
    assert "endpoint_ms" not in last_log(capsys)  # refused without calling the endpoint


def test_a_truncated_image_is_a_400_from_the_model(api, capsys):
    status, body, _ = call(api, {"image": b64(images.truncated_jpeg())})
    assert (status, body["error"]["code"]) == (400, "invalid_image")
    log = last_log(capsys)
    assert log["endpoint_error"] == "ModelError" and log["model_status"] == 400


def test_too_many_bytes_is_413(endpoint):
    api = load_handler(endpoint.url, MAX_IMAGE_BYTES="2048")
    status, body, _ = call(api, url_event(images.jpeg(200, 200), "image/jpeg"))
    assert (status, body["error"]["code"]) == (413, "image_too_large")


@pytest.mark.parametrize("encoded", [False, True])
def test_the_byte_limit_is_exact_for_json_bodies(endpoint, encoded):
    data = images.jpeg(120, 90)
    event = json_event({"image": b64(data), "top_k": 1})
    if encoded:
        event.update(body=b64(event["body"].encode()), isBase64Encoded=True)
    at_limit = load_handler(endpoint.url, MAX_IMAGE_BYTES=str(max(len(data), 1024)))
    assert call(at_limit, event)[0] == 200
    below = load_handler(endpoint.url, MAX_IMAGE_BYTES=str(len(data) - 1))
    status, body, _ = call(below, event)
    assert (status, body["error"]["code"]) == (413, "image_too_large")


@pytest.mark.parametrize("form", ["direct", "json-body", "json-body-escaped-slashes"])
def test_the_byte_limit_holds_for_line_wrapped_base64(endpoint, form):
    """Line breaks (and JSON's optional "\\/" escapes) are not image bytes: an image at the limit passes."""
    data = images.jpeg(900, 900)  # ~150 KB: its 76-column line breaks are thousands of characters
    wrapped = base64.encodebytes(data).decode()
    if form == "direct":
        event = {"image": wrapped}
    else:
        event = json_event({"image": wrapped})
        if form == "json-body-escaped-slashes":
            event["body"] = event["body"].replace("/", "\\/")
    at_limit = load_handler(endpoint.url, MAX_IMAGE_BYTES=str(len(data)))
    assert call(at_limit, event)[0] == 200
    below = load_handler(endpoint.url, MAX_IMAGE_BYTES=str(len(data) - 1))
    assert call(below, event)[1]["error"]["code"] == "image_too_large"


def test_a_json_body_holds_at_most_max_json_commas(api):
    """Every JSON value after the first needs a comma: their count bounds what the parser builds."""
    limit = prediction_request.MAX_JSON_COMMAS
    at_limit = json_event({"image": b64(images.jpeg()), "top_k": 1, "tags": [0] * (limit - 1)})
    assert at_limit["body"].count(",") == limit
    assert call(api, at_limit)[0] == 200
    over = json_event({"image": b64(images.jpeg()), "top_k": 1, "tags": [0] * limit})
    status, body, _ = call(api, over)
    assert (status, body["error"]["code"]) == (400, "invalid_json")
    assert str(limit) in body["error"]["message"]


@pytest.mark.parametrize(
    ("form", "code"), [("spaced-base64", "invalid_image"), ("json-of-tiny-values", "invalid_json")]
)
def test_a_body_of_tiny_tokens_costs_memory_in_proportion_to_its_size(api, form, code):
    """One Python object per few characters ("AB AB AB ...", "[{},{},...]") is ~25 bytes of memory per
    byte of body: 150 MB for a 6 MB request, enough to run a small function out of memory."""
    size = 1_200_000
    if form == "spaced-base64":
        event = {"image": "AB " * (size // 3)}  # valid base64 once the spaces are gone
    else:
        event = json_event({}) | {"body": "[" + "{}," * (size // 3) + "{}]"}
    tracemalloc.start()
    try:
        status, body, _ = call(api, event)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (status, body["error"]["code"]) == (400, code)
    assert peak < 4 * size, f"{peak / size:.1f} bytes of memory per byte of body"


def test_too_many_pixels_is_413_from_the_model(api, capsys):
    status, body, _ = call(api, {"image": b64(images.png_bomb())})
    assert (status, body["error"]["code"]) == (413, "image_too_large")
    assert last_log(capsys)["model_status"] == 413


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (url_event(images.jpeg(), "text/plain"), "unsupported_media_type"),
        (url_event(images.jpeg(), "") | {"headers": {}}, "unsupported_media_type"),
        (url_event(images.gif(), "image/png"), "unsupported_image_format"),
        ({"image": b64(images.bmp())}, "unsupported_image_format"),
    ],
    ids=["text-plain", "no-content-type", "gif", "bmp"],
)
def test_unsupported_types_are_415(api, event, code):
    status, body, _ = call(api, event)
    assert (status, body["error"]["code"]) == (415, code)


# --- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"ENDPOINT_NAME": ""},
        {"ENDPOINT_NAME": "bad name!"},
        {"ENDPOINT_NAME": "dog-breeds\n"},
        {"ENDPOINT_NAME": "a" + "-" * 70 + "b"},
        {"ENDPOINT_READ_TIMEOUT_SECONDS": "soon"},
        {"ENDPOINT_MAX_ATTEMPTS": "0"},
        {"MAX_IMAGE_BYTES": "-5"},
    ],
)
def test_bad_configuration_fails_at_import_naming_the_variable(endpoint, settings):
    with pytest.raises(RuntimeError, match=r"ENDPOINT_|MAX_IMAGE_BYTES"):
        load_handler(endpoint.url, **settings)


def test_client_has_explicit_timeouts_and_standard_retries(endpoint):
    api = load_handler(endpoint.url, ENDPOINT_READ_TIMEOUT_SECONDS="7.5", ENDPOINT_MAX_ATTEMPTS="3")
    config = api.RUNTIME.meta.config
    assert config.read_timeout == 7.5 and config.connect_timeout == 2.0
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_lambda_bundle_imports_only_stdlib_botocore_and_its_own_modules():
    """Fast cold start and a self-contained bundle: no torch, PIL, numpy or repo packages in lambda/, and
    not boto3 either (its layer costs import time and adds nothing to one API call)."""
    bundle = sorted(LAMBDA_DIR.glob("*.py"))
    own = {path.stem for path in bundle}
    for path in bundle:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root in sys.stdlib_module_names or root in {"botocore"} | own, (
                    path.name,
                    name,
                )


def test_cold_import_loads_no_heavy_modules():
    script = "import sys, handler; print(sorted(m for m in ('torch', 'PIL', 'numpy') if m in sys.modules))"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "ENDPOINT_NAME": "cold-start",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    result = subprocess.run(  # noqa: S603 - this interpreter with a fixed script, no shell
        [sys.executable, "-c", script], cwd=LAMBDA_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
