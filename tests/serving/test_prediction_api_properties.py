"""Property tests: whatever arrives, the prediction API answers inside its table, in its shape, safely."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest
import sample_images as images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_helpers import load_handler

STATUSES = {200, 400, 413, 415, 429, 502, 503, 504}
FORBIDDEN = ("Traceback", 'File "', "arn:", "Error(", "botocore", "Received client error")
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
MAGIC_PREFIXES = [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x10\x00\x00\x00WEBP", b"GIF89a", b"BM"]
CONTENT_TYPES = [
    "image/jpeg",
    "image/png",
    "image/webp",
    "application/json",
    "text/plain",
    "",
    "IMAGE/PNG; q=1",
]


@pytest.fixture(scope="module")
def api(endpoint):
    return load_handler(endpoint.url, MAX_IMAGE_BYTES="65536")


def check(api, event) -> dict:
    response = api.handler(event, SimpleNamespace(aws_request_id="prop-1"))
    assert response["statusCode"] in STATUSES
    assert response["headers"]["x-request-id"] == "prop-1"
    body = json.loads(response["body"])
    assert isinstance(body, dict) and body["request_id"] == "prop-1"
    if response["statusCode"] == 200:
        assert isinstance(body["predictions"], list)
    else:
        assert set(body) == {"error", "request_id"}
        assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
        assert not any(token in response["body"] for token in FORBIDDEN), response["body"]
    return body


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
image_like = st.builds(
    lambda prefix, tail: prefix + tail, st.sampled_from(MAGIC_PREFIXES), st.binary(max_size=300)
)


@PROPERTY_SETTINGS
@given(data=image_like, top_k=json_values | st.integers(-3, 30))
def test_direct_invocation_with_arbitrary_bytes_and_top_k(api, data, top_k):
    check(api, {"image": base64.b64encode(data).decode(), "top_k": top_k})


@PROPERTY_SETTINGS
@given(event=json_values)
def test_arbitrary_json_events(api, event):
    check(api, event)


@PROPERTY_SETTINGS
@given(
    body=st.one_of(st.text(max_size=200), image_like.map(lambda b: base64.b64encode(b).decode()), st.none()),
    encoded=st.booleans() | st.none() | st.text(max_size=3),
    content_type=st.sampled_from(CONTENT_TYPES) | st.text(max_size=30),
    method=st.sampled_from(["POST", "GET", "PUT", "post", ""]) | st.integers(),
    query=st.none() | st.dictionaries(st.sampled_from(["top_k", "x"]), st.text(max_size=6), max_size=2),
    headers_shape=st.sampled_from(["dict", "missing", "list"]),
)
def test_arbitrary_http_events(api, body, encoded, content_type, method, query, headers_shape):
    headers = {"dict": {"content-type": content_type}, "missing": None, "list": [content_type]}[headers_shape]
    event = {
        "version": "2.0",
        "requestContext": {"http": {"method": method}},
        "headers": headers,
        "queryStringParameters": query,
        "body": body,
        "isBase64Encoded": encoded,
    }
    check(api, event)


@PROPERTY_SETTINGS
@given(document=st.dictionaries(st.sampled_from(["image", "top_k", "url"]), json_values, max_size=3))
def test_arbitrary_json_bodies(api, document):
    event = {
        "requestContext": {"http": {"method": "POST"}},
        "headers": {"content-type": "application/json"},
        "body": json.dumps(document),
        "isBase64Encoded": False,
    }
    check(api, event)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=1, max_value=2000), top_k=st.integers(1, 20))
def test_damaged_real_images_are_400_never_500(api, cut, top_k):
    data = images.jpeg(128, 96)
    body = check(api, {"image": base64.b64encode(data[: min(cut, len(data) - 1)]).decode(), "top_k": top_k})
    assert body["error"]["code"] in {"invalid_image", "unsupported_image_format"}
