"""lambda/handler.py as CloudFront's OAC reaches it: the signed request's headers ride along in the event.

Against the real handler and a local endpoint serving a trained model (the ``site`` fixture's stack),
both called directly with a Function URL event and through the local site over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json

import pytest
import sample_images

from localdev.function_url import function_url_event
from localdev.serve import LambdaContext


def cloudfront_event(body: bytes, content_type: str, target: str = "/api/predict?top_k=5") -> dict:
    """The event for a browser's POST after CloudFront signed it for the Function URL origin."""
    headers = [
        ("content-type", content_type),
        ("x-amz-content-sha256", hashlib.sha256(body).hexdigest()),
        ("x-amz-date", "20261202T101500Z"),
        ("x-amz-cf-id", "Zk8C3v7x1Q_example-cloudfront-id=="),
        ("via", "2.0 0123456789abcdef.cloudfront.net (CloudFront)"),
        ("x-forwarded-for", "203.0.113.9"),
        ("host", "abcdefghij.lambda-url.us-east-1.on.aws"),
    ]
    return function_url_event("POST", target, headers, body, source_ip="130.176.0.10", request_id="req-cf-1")


def assert_classified(response: dict, top_k: int, class_names: list[str]) -> None:
    assert response["statusCode"] == 200, response["body"]
    body = json.loads(response["body"])
    assert len(body["predictions"]) == top_k
    assert all(class_names[p["index"]] == p["breed"] for p in body["predictions"])
    assert body["request_id"] == response["headers"]["x-request-id"] == "req-cf-1"


def test_a_raw_jpeg_event_with_the_payload_hash_header_is_classified(site, class_names):
    event = cloudfront_event(sample_images.jpeg(320, 240), "image/jpeg")
    assert event["isBase64Encoded"] is True and "x-amz-content-sha256" in event["headers"]
    assert_classified(site.function(event, LambdaContext("req-cf-1")), 5, class_names)


def test_a_json_event_with_the_payload_hash_header_is_classified(site, class_names):
    document = json.dumps({"image": base64.b64encode(sample_images.png_rgba()).decode(), "top_k": 3})
    event = cloudfront_event(document.encode(), "application/json", target="/api/predict")
    assert event["isBase64Encoded"] is False
    assert_classified(site.function(event, LambdaContext("req-cf-1")), 3, class_names)


def post(site, body: bytes, content_type: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", site.server_address[1], timeout=30)
    headers = {"content-type": content_type, "x-amz-content-sha256": hashlib.sha256(body).hexdigest()}
    try:
        connection.request("POST", "/api/predict?top_k=2", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_the_site_serves_predictions_from_the_handler(site, class_names):
    status, body = post(site, sample_images.webp(), "image/webp")
    assert status == 200
    assert [class_names[p["index"]] for p in body["predictions"]] == [p["breed"] for p in body["predictions"]]
    assert len(body["predictions"]) == 2


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"not an image at all", "text/plain", 415, "unsupported_media_type"),  # arrives as text
        (b"\x00\x01 binary junk", "application/octet-stream", 415, "unsupported_media_type"),  # as base64
        (b"just some text", "image/jpeg", 400, "invalid_image"),  # a JPEG type, not JPEG bytes
        (sample_images.gif(), "image/gif", 415, "unsupported_media_type"),
    ],
)
def test_the_site_passes_the_handlers_refusals_through(site, body, content_type, status, code):
    answered, document = post(site, body, content_type)
    assert (answered, document["error"]["code"]) == (status, code)
    assert document["request_id"]
