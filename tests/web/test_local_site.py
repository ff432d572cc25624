"""localdev.serve's site and localdev.function_url: what CloudFront's OAC and the Function URL do, emulated.

A recording function stands in for lambda/handler.py here (no model, no endpoint): each test reads the
event the function got, or that it got none.
"""

from __future__ import annotations

import ast
import base64
import fnmatch
import hashlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localdev import function_url
from localdev.serve import WEB_DIR, LambdaContext, LocalSite, SiteRequestHandler
from stacks.security_headers import SECURITY_HEADERS

REPO_ROOT = Path(__file__).resolve().parents[2]

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8  # binary bytes, every value once per 256


class RecordingFunction:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], LambdaContext]] = []
        self.result: Any = {
            "statusCode": 200,
            "headers": {"content-type": "application/json", "x-request-id": "fn-1"},
            "body": json.dumps({"predictions": []}),
        }

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> Any:
        self.calls.append((event, context))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


@pytest.fixture(scope="module")
def site() -> Iterator[LocalSite]:
    running = LocalSite(("127.0.0.1", 0), RecordingFunction()).start()
    yield running
    running.stop()


@pytest.fixture
def function(site: LocalSite) -> RecordingFunction:
    """The site's function, fresh for each test."""
    site.function = RecordingFunction()
    return site.function


def request(
    site: LocalSite, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", site.server_address[1], timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def signed(body: bytes, content_type: str) -> dict[str, str]:
    """The headers the page sends: the body's type and its SHA-256 for the OAC signature."""
    return {"content-type": content_type, "x-amz-content-sha256": hashlib.sha256(body).hexdigest()}


# --- POST /api/predict: the event ------------------------------------------------------------------


def test_a_raw_jpeg_post_becomes_a_base64_function_url_event(site, function):
    status, headers, body = request(
        site, "POST", "/api/predict?top_k=3", JPEG, {**signed(JPEG, "image/jpeg"), "User-Agent": "test/1"}
    )
    assert (status, body) == (200, b'{"predictions": []}')
    (event, context), *others = function.calls
    assert others == []
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert (event["rawPath"], event["rawQueryString"]) == ("/api/predict", "top_k=3")
    assert event["queryStringParameters"] == {"top_k": "3"}
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == JPEG
    # Payload 2.0 lower-cases header names; the signed hash travels on to the function, as from CloudFront.
    assert event["headers"]["content-type"] == "image/jpeg"
    assert event["headers"]["user-agent"] == "test/1"
    assert event["headers"]["x-amz-content-sha256"] == hashlib.sha256(JPEG).hexdigest()
    assert all(name == name.lower() for name in event["headers"])
    http_context = event["requestContext"]["http"]
    assert (http_context["method"], http_context["path"], http_context["sourceIp"]) == (
        "POST",
        "/api/predict",
        "127.0.0.1",
    )
    # One id for the invocation: the context's, the event's and the URL's response header.
    assert context.aws_request_id == event["requestContext"]["requestId"] == headers["x-amzn-requestid"]
    assert headers["x-request-id"] == "fn-1" and headers["content-type"] == "application/json"


def test_a_json_body_arrives_as_text_and_without_a_query_there_are_no_parameters(site, function):
    document = json.dumps({"image": "AAAA", "top_k": 2}).encode()
    status, _, _ = request(site, "POST", "/api/predict", document, signed(document, "application/json"))
    assert status == 200
    event = function.calls[0][0]
    assert event["isBase64Encoded"] is False and event["body"] == document.decode()
    assert event["rawQueryString"] == "" and "queryStringParameters" not in event


@pytest.mark.parametrize(
    ("content_type", "as_text"),
    [
        ("text/plain", True),
        ("text/html; charset=utf-8", True),
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/xml", True),
        ("application/javascript", True),
        ("image/jpeg", False),
        ("application/octet-stream", False),
        ("application/x-www-form-urlencoded", False),
        ("application/vnd.api+json", False),
        ("", False),
    ],
)
def test_which_bodies_the_function_url_base64_encodes(content_type, as_text):
    assert function_url.is_text_content_type(content_type) is as_text


def test_repeated_headers_and_parameters_are_joined_and_cookies_listed_apart():
    event = function_url.function_url_event(
        "POST",
        "/api/predict?top_k=2&top_k=3&note=a%20b",
        [("Accept", "image/*"), ("accept", "*/*"), ("Cookie", "a=1; b=2"), ("Host", "abc.lambda-url.on.aws")],
        b"x",
        source_ip="203.0.113.9",
        request_id="r-1",
        now=1_700_000_000.0,
    )
    assert event["headers"] == {"accept": "image/*,*/*", "host": "abc.lambda-url.on.aws"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["queryStringParameters"] == {"top_k": "2,3", "note": "a b"}
    assert event["requestContext"]["domainName"] == "abc.lambda-url.on.aws"
    assert event["requestContext"]["domainPrefix"] == "abc"
    assert event["requestContext"]["timeEpoch"] == 1_700_000_000_000
    assert event["requestContext"]["time"] == "14/Nov/2023:22:13:20 +0000"


def without_invocation(event: dict[str, Any]) -> dict[str, Any]:
    """The event less what differs between two invocations of one request (id, time, caller, host)."""
    per_invocation = {"requestId", "time", "timeEpoch", "domainName", "domainPrefix"}
    context = {k: v for k, v in event["requestContext"].items() if k not in per_invocation}
    context["http"] = {k: v for k, v in context["http"].items() if k != "sourceIp"}
    headers = {k: v for k, v in event["headers"].items() if k != "host"}
    return {**event, "requestContext": context, "headers": headers}


@pytest.mark.parametrize("top_k", [None, 0, 3])
def test_local_invoke_and_the_serving_tests_build_the_local_sites_event(top_k):
    """One builder, localdev.function_url's: what localdev.local_invoke (make demo, bench/) and the
    serving tests send the handler is what the local site does, so no query means no
    queryStringParameters and an image body is base64."""
    from serving_helpers import url_event

    from localdev import local_invoke

    target = "/" if top_k is None else f"/?top_k={top_k}"
    site_event = function_url.function_url_event(
        "POST", target, [("content-type", "image/jpeg")], JPEG, source_ip="127.0.0.1", request_id="r"
    )
    demo_event = local_invoke.function_url_event(JPEG, "image/jpeg", top_k)
    test_event = url_event(JPEG, "image/jpeg", None if top_k is None else {"top_k": str(top_k)})
    assert without_invocation(demo_event) == without_invocation(test_event) == without_invocation(site_event)
    assert ("queryStringParameters" in demo_event) is (top_k is not None)
    assert demo_event["isBase64Encoded"] is True and base64.b64decode(demo_event["body"]) == JPEG


def test_get_reaches_the_function_without_a_payload_hash_or_a_body(site, function):
    status, _, _ = request(site, "GET", "/api/predict")
    assert status == 200
    event = function.calls[0][0]
    assert event["requestContext"]["http"]["method"] == "GET" and "body" not in event


# --- what never reaches the function ---------------------------------------------------------------


@pytest.mark.parametrize(
    "declared",
    [
        None,
        hashlib.sha256(b"another body").hexdigest(),
        hashlib.sha256(JPEG).hexdigest().upper(),  # SigV4 hashes are lowercase hex
        "UNSIGNED-PAYLOAD",  # "Lambda doesn't support unsigned payloads"
        "",
    ],
    ids=["missing", "other body", "uppercase", "unsigned", "empty"],
)
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_payload_hash_that_is_not_the_bodys_is_403_before_the_function(site, function, method, declared):
    headers = {"content-type": "image/jpeg"}
    if declared is not None:
        headers["x-amz-content-sha256"] = declared
    status, response_headers, body = request(site, method, "/api/predict", JPEG, headers)
    assert status == 403
    assert response_headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert json.loads(body) == {"message": function_url.SIGNATURE_MISMATCH_MESSAGE}
    assert function.calls == []


def test_a_body_larger_than_the_invocation_payload_is_413_unread(site, function):
    connection = http.client.HTTPConnection("127.0.0.1", site.server_address[1], timeout=10)
    try:
        connection.putrequest("POST", "/api/predict")
        connection.putheader("content-type", "image/jpeg")
        connection.putheader("content-length", str(function_url.MAX_INVOCATION_PAYLOAD_BYTES + 1))
        connection.endheaders()  # no body sent: the answer must not wait for it
        response = connection.getresponse()
        status, body = response.status, response.read()
    finally:
        connection.close()
    assert status == 413
    assert json.loads(body) == {"message": function_url.PAYLOAD_TOO_LARGE_MESSAGE}
    assert function.calls == []


@pytest.mark.parametrize("declared", ["-1", "ten", "+5", "1e3", "0x10", "\u00b2"])
def test_a_content_length_that_is_not_a_number_of_bytes_is_400_unread(site, function, declared):
    """Not a 413: nothing says the body is large, only that its end cannot be known. ("\u00b2", a
    superscript two, is a digit to str.isdigit() but not to int(): sent as the byte 0xb2.)"""
    connection = http.client.HTTPConnection("127.0.0.1", site.server_address[1], timeout=10)
    try:
        connection.putrequest("POST", "/api/predict")
        connection.putheader("content-type", "image/jpeg")
        connection.putheader("content-length", declared)
        connection.endheaders()
        response = connection.getresponse()
        status, body = response.status, response.read()
    finally:
        connection.close()
    assert status == 400, body
    assert b"Content-Length" in body
    assert function.calls == []


def test_the_site_gives_up_on_a_read_after_30_seconds():
    """BaseHTTPRequestHandler sets ``timeout`` on each connection's socket; None would wait forever."""
    assert SiteRequestHandler.timeout == 30


def slow_post(site: LocalSite, declared: int, sent: bytes, *, close_sending: bool) -> tuple[bytes, float]:
    """POST with a body shorter than its Content-Length; the raw answer and how long it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", site.server_address[1]), timeout=10) as client:
        head = (
            f"POST /api/predict HTTP/1.1\r\nHost: localhost\r\ncontent-type: image/jpeg\r\n"
            f"x-amz-content-sha256: {hashlib.sha256(JPEG[:declared]).hexdigest()}\r\n"
            f"content-length: {declared}\r\n\r\n"
        )
        client.sendall(head.encode() + sent)
        if close_sending:
            client.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer, time.monotonic() - started


def test_a_body_that_stops_coming_is_408_after_the_read_timeout(site, function, monkeypatch):
    monkeypatch.setattr(SiteRequestHandler, "timeout", 0.5)  # read on each new connection
    answer, took = slow_post(site, 100, JPEG[:10], close_sending=False)
    assert answer.startswith(b"HTTP/1.0 408 ") or answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    assert 0.4 < took < 5
    assert function.calls == []


def test_a_body_cut_short_by_the_client_is_400(site, function):
    answer, _ = slow_post(site, 100, JPEG[:10], close_sending=True)
    assert answer.split(b"\r\n", 1)[0].split(b" ", 2)[1] == b"400", answer[:80]
    assert b"shorter than its Content-Length" in answer
    assert function.calls == []


def test_a_binary_body_whose_base64_event_exceeds_6_mb_is_413(site, function):
    """5 MB of image fits a 6 MB request, not a 6 MB event: base64 makes it 6.7 MB."""
    body = JPEG[:4] + bytes(5 * 1024 * 1024)
    status, _, _ = request(site, "POST", "/api/predict", body, signed(body, "image/jpeg"))
    assert status == 413
    assert function.calls == []


def test_a_function_that_raises_is_a_502(site, function):
    function.result = RuntimeError("bug")
    status, headers, body = request(site, "POST", "/api/predict", JPEG, signed(JPEG, "image/jpeg"))
    assert status == 502 and json.loads(body) == {"message": "Internal Server Error"}
    assert "x-amzn-requestid" in headers


def test_the_function_results_shapes_become_http_answers():
    png = b"\x89PNG\r\n\x1a\n"
    encoded = {"statusCode": 201, "body": base64.b64encode(png).decode(), "isBase64Encoded": True}
    assert function_url.http_response(encoded) == function_url.HttpResponse(
        201, {"content-type": "application/json"}, png
    )
    with_cookies = {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "cookies": ["a=1"]}
    assert function_url.http_response(with_cookies) == function_url.HttpResponse(
        200, {"content-type": "text/plain"}, b"", ["a=1"]
    )
    # A function that returns no status code: Lambda answers 200 with the value as JSON.
    assert function_url.http_response({"ok": True}) == function_url.HttpResponse(
        200, {"content-type": "application/json"}, b'{"ok": true}'
    )


# --- the static site ---------------------------------------------------------------------------------


def test_get_root_serves_index_html_with_the_production_security_headers(site):
    status, headers, body = request(site, "GET", "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert b'<script src="app.js" defer></script>' in body
    assert {name: headers[name] for name in SECURITY_HEADERS} == SECURITY_HEADERS


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ],
)
def test_the_pages_files_are_served_with_their_types(site, path, content_type):
    status, headers, body = request(site, "GET", path)
    assert (status, headers["content-type"]) == (200, content_type) and body
    assert headers["x-content-type-options"] == "nosniff"


def test_head_answers_the_headers_without_a_body(site):
    status, headers, body = request(site, "HEAD", "/app.js")
    assert status == 200 and int(headers["content-length"]) > 0 and body == b""


@pytest.mark.parametrize(
    "path",
    [
        "/nothing-here.html",
        "/../localdev/serve.py",
        "/%2e%2e/Makefile",
        "/..%2fMakefile",
        "//etc/passwd",
        "/.hidden",
        "/api/other",
        "/index.html/",
        "/%00",  # Path.resolve: ValueError, embedded null byte
        "/app.js%00",
        "/" + "a" * 300 + ".js",  # Path.is_file: OSError, file name too long
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_anything_outside_the_pages_files_is_404(site, method, path):
    status, headers, body = request(site, method, path)
    assert status == 404
    assert headers["content-security-policy"] == SECURITY_HEADERS["content-security-policy"]
    assert body == (b"Not Found\n" if method == "GET" else b"")


def deployed_patterns() -> tuple[str, ...]:
    """stacks/front_door.py's WEB_FILES, read without importing the CDK."""
    tree = ast.parse((REPO_ROOT / "stacks" / "front_door.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "WEB_FILES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("stacks/front_door.py defines no WEB_FILES")


def test_the_local_site_serves_exactly_the_files_production_deploys(site):
    """The page's bucket gets the files of web/ that WEB_FILES matches (PageDeployment excludes "*",
    then re-includes each pattern; a subdirectory stays excluded); the local site must serve those and
    no other file of web/, or the browser tests could pass on a file production does not have."""
    patterns = deployed_patterns()
    files = sorted(path for path in WEB_DIR.rglob("*") if path.is_file())
    deployed = {
        path.name
        for path in files
        if path.parent == WEB_DIR and any(fnmatch.fnmatch(path.name, p) for p in patterns)
    }
    served = {
        path.relative_to(WEB_DIR).as_posix()
        for path in files
        if request(site, "GET", "/" + path.relative_to(WEB_DIR).as_posix())[0] == 200
    }
    assert served == deployed
    assert {"index.html", "app.js", "style.css", "favicon.svg"} <= deployed


def test_posting_anywhere_but_the_api_is_405(site, function):
    status, headers, _ = request(site, "POST", "/index.html", JPEG, signed(JPEG, "image/jpeg"))
    assert (status, headers["allow"]) == (405, "GET, HEAD")
    assert function.calls == []
