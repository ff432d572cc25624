"""What CloudFront's Lambda origin access control and the Function URL do around ``lambda/handler.py``.

Production: the browser POSTs to ``/api/predict`` on the CloudFront distribution, which signs the origin
request with SigV4 through a Lambda origin access control (OAC) and sends it to the function's URL
(``AWS_IAM`` auth); the URL turns the request into a payload-format-2.0 event and the function's result
back into the HTTP response. ``localdev.serve`` does the same steps in-process, with these functions:

* :func:`payload_hash_refusal`: OAC does not hash request bodies. "If you use PUT or POST methods with your
  Lambda function URL, your users must compute the SHA256 of the body and include the payload hash value
  of the request body in the x-amz-content-sha256 header when sending the request to CloudFront. Lambda
  doesn't support unsigned payloads." (CloudFront Developer Guide, "Restrict access to an AWS Lambda
  function URL origin"). Lambda recomputes the hash and refuses a request whose header is missing or
  wrong with a 403 before the function runs; so does the local site, so the page is proven to send it.
* :func:`function_url_event`: the event (Lambda Developer Guide, "Invoking Lambda function URLs",
  request payload format). The one builder: ``localdev.local_invoke`` (``make demo``, ``bench/``) and
  the serving tests' ``url_event`` build their events with it too.
* :func:`http_response`: the function's result as the URL answers it (same page, response format).
* :data:`MAX_INVOCATION_PAYLOAD_BYTES`: Lambda's 6 MB synchronous invocation payload, the event included.

Standard library only: ``localdev.serve`` must load without torch (the heavy parts load when it starts).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Lambda quotas, "Invocation payload (request and response)": 6 MB for synchronous invocations. It
# applies to the event, and a binary body travels in it base64-encoded: a 4/3 larger string.
MAX_INVOCATION_PAYLOAD_BYTES = 6 * 1024 * 1024
PAYLOAD_HASH_HEADER = "x-amz-content-sha256"
# The methods whose payload hash Lambda checks through OAC (the CloudFront guide names PUT and POST).
HASHED_METHODS = frozenset({"POST", "PUT"})
# Lambda's answer to a POST through OAC whose x-amz-content-sha256 does not match the body, reported
# from production: HTTP 403, x-amzn-errortype InvalidSignatureException, this body
# (github.com/minorun365/html-share/issues/4; the same text as every SigV4 signature mismatch).
SIGNATURE_MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)
# The Invoke API's RequestEntityTooLargeException message for the same limit; what the Function URL
# itself answers is not documented, so the local site answers this with the 413.
PAYLOAD_TOO_LARGE_MESSAGE = (
    f"Request must be smaller than {MAX_INVOCATION_PAYLOAD_BYTES} bytes for the InvokeFunction operation"
)
# "If the content type of the request is binary, the body is base64-encoded" (Lambda guide), which does
# not say which types are text. Checked against AWS for payload 2.0: only text/* and these arrive as
# text; everything else, a missing content type and application/x-www-form-urlencoded included, is
# base64 (github.com/ministackorg/ministack/pull/766; Function URLs: LeanerCloud/CUDly/pull/1483).
TEXT_MEDIA_TYPES = frozenset({"application/json", "application/xml", "application/javascript"})
LOCAL_URL_ID = "localfunctionurl"  # where the real event has the URL id (<url-id>.lambda-url.<region>.on.aws)
LOCAL_ACCOUNT = "000000000000"  # clearly not a real account


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    cookies: list[str] = field(default_factory=list)


def payload_hash_refusal(method: str, headers: Mapping[str, str], body: bytes) -> HttpResponse | None:
    """Lambda's 403 for a POST or PUT whose ``x-amz-content-sha256`` is not the body's SHA-256 (lowercase
    hex, as SigV4 writes it; ``UNSIGNED-PAYLOAD`` included, which Lambda refuses); None when it may pass.

    ``headers`` must have lower-cased names.
    """
    if method.upper() not in HASHED_METHODS:
        return None
    declared = headers.get(PAYLOAD_HASH_HEADER, "").strip()  # SigV4 trims header values
    if declared == hashlib.sha256(body).hexdigest():
        return None
    return _service_error(403, "InvalidSignatureException", SIGNATURE_MISMATCH_MESSAGE)


def payload_too_large() -> HttpResponse:
    return _service_error(413, "RequestEntityTooLargeException", PAYLOAD_TOO_LARGE_MESSAGE)


def is_text_content_type(content_type: str) -> bool:
    """Whether a body of this type reaches the function as text rather than base64."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type.startswith("text/") or media_type in TEXT_MEDIA_TYPES


def function_url_event(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    *,
    source_ip: str,
    request_id: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The payload-format-2.0 event a Function URL delivers for ``method target`` (path and query).

    Header names are lower-cased and repeated headers joined with commas; cookies move to ``cookies``;
    ``queryStringParameters`` (decoded, repeated names joined with commas) is absent without a query.
    A text body arrives as it is, any other base64-encoded with ``isBase64Encoded`` true.
    """
    now = time.time() if now is None else now
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
        else:
            joined[key] = f"{joined[key]},{value}" if key in joined else value
    url = urlsplit(target)
    query: dict[str, str] = {}
    for key, value in parse_qsl(url.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    text = is_text_content_type(joined.get("content-type", ""))
    domain = joined.get("host", f"{LOCAL_URL_ID}.lambda-url.us-east-1.on.aws")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path or "/",
        "rawQueryString": url.query,
        "headers": joined,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT,
            "apiId": LOCAL_URL_ID,
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "http": {
                "method": method.upper(),
                "path": url.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": not text,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body:
        event["body"] = body.decode("utf-8", errors="replace") if text else base64.b64encode(body).decode()
    return event


def http_response(result: Any) -> HttpResponse:
    """The HTTP answer a Function URL makes of the function's return value.

    A dict with ``statusCode`` is taken as the response (``body`` base64-decoded when
    ``isBase64Encoded``; content type application/json unless the headers name one); any other value
    that JSON can hold becomes a 200 application/json whose body is that value, as the Lambda guide
    describes for a function that returns no status code.
    """
    if isinstance(result, dict) and "statusCode" in result:
        headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        headers.setdefault("content-type", "application/json")
        body = result.get("body") or ""
        data = base64.b64decode(body) if result.get("isBase64Encoded") is True else str(body).encode()
        return HttpResponse(int(result["statusCode"]), headers, data, list(result.get("cookies") or []))
    return HttpResponse(200, {"content-type": "application/json"}, json.dumps(result).encode())


def _service_error(status: int, error_type: str, message: str) -> HttpResponse:
    headers = {"content-type": "application/json", "x-amzn-errortype": error_type}
    return HttpResponse(status, headers, json.dumps({"message": message}).encode())
