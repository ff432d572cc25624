"""Turns a Lambda event into a validated :class:`PredictionRequest`, or raises an :class:`ApiError`.

Accepted events (docs/serving.md, "Prediction API"):

* HTTP, Lambda Function URL / API Gateway HTTP API payload 2.0: ``POST`` with the raw image as the
  body (``isBase64Encoded: true``, ``content-type: image/jpeg|png|webp``), or ``content-type:
  application/json`` with ``{"image": "<base64>", "top_k": 3}``; ``top_k`` may also be a query
  parameter.
* Direct invocation: ``{"image": "<base64>", "top_k": 3}``.

Everything is checked here, before the endpoint is called: a request the model would reject costs
no endpoint time, and the endpoint never sees bytes that are not a JPEG, PNG or WebP image.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from api_errors import ApiError, bad_request, too_large, unsupported

# Content types of a raw-image body; "image/jpg" is a common misspelling, accepted as JPEG.
RAW_IMAGE_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "image/webp"})
JSON_TYPE = "application/json"
# Formats we can name, so that the caller hears "GIF is not supported" rather than "not an image".
_OTHER_FORMATS = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"%PDF", "PDF"),
)
# What line-wrapping encoders put in base64 (`base64`, MIME: "\n" or "\r\n" every 76 characters).
BASE64_WHITESPACE = b" \t\n\r\v\f"
# A JSON request is one small object; every value after the first needs a comma (nesting is bounded
# by the parser's recursion limit), and base64 and data URLs have at most one. See _parse_json_body.
MAX_JSON_COMMAS = 1000


@dataclass(frozen=True)
class PredictionRequest:
    image: bytes
    content_type: str  # what the bytes are (from their magic number), sent to the endpoint
    top_k: int


@dataclass(frozen=True)
class Limits:
    max_image_bytes: int
    max_top_k: int
    default_top_k: int


def event_kind(event: Any) -> str:
    """``http`` (Function URL / API Gateway), ``direct`` (an invoke payload) or ``invalid``."""
    if not isinstance(event, dict):
        return "invalid"
    return "http" if _is_http_event(event) else "direct"


def parse_event(event: Any, limits: Limits) -> PredictionRequest:
    if not isinstance(event, dict):
        raise bad_request("invalid_event", "the event must be a JSON object")
    if _is_http_event(event):
        return _parse_http(event, limits)
    image = _decode_image_field(event.get("image"), limits)
    top_k = _parse_top_k(event.get("top_k"), limits)
    return PredictionRequest(image, sniff_image_type(image), top_k)


def sniff_image_type(data: bytes) -> str:
    """The MIME type of a JPEG, PNG or WebP from its first bytes; an :class:`ApiError` otherwise."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    # RIFF container: "RIFF", 4-byte little-endian size, then the form type "WEBP".
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, name in _OTHER_FORMATS:
        if data.startswith(magic):
            raise unsupported(
                "unsupported_image_format", f"{name} images are not supported; send JPEG, PNG or WebP"
            )
    if len(data) >= 12 and data[4:8] == b"ftyp":
        raise unsupported(
            "unsupported_image_format", "HEIC/AVIF images are not supported; send JPEG, PNG or WebP"
        )
    raise bad_request("invalid_image", "the image is not a JPEG, PNG or WebP file")


def _is_http_event(event: dict[str, Any]) -> bool:
    return "requestContext" in event or "headers" in event or "body" in event or "httpMethod" in event


def _parse_http(event: dict[str, Any], limits: Limits) -> PredictionRequest:
    method = _http_method(event)
    if method != "POST":
        raise bad_request("method_not_allowed", "use POST to send an image")
    headers = event.get("headers") or {}
    if not isinstance(headers, dict):
        raise bad_request("invalid_event", "the event's headers must be an object")
    content_type = _header(headers, "content-type").split(";", 1)[0].strip().lower()
    query = event.get("queryStringParameters") or {}
    if not isinstance(query, dict):
        raise bad_request("invalid_event", "the event's query parameters must be an object")
    query_top_k = query.get("top_k")

    body = event.get("body")
    if body is None or body == "":
        raise bad_request("missing_image", "the request has no body; send an image or a JSON object")
    if not isinstance(body, str):
        raise bad_request("invalid_event", "the event's body must be a string")
    encoded = event.get("isBase64Encoded") is True

    if content_type in RAW_IMAGE_TYPES:
        if not encoded:
            # Function URLs and HTTP APIs base64-encode binary bodies; a text body cannot hold an image.
            raise bad_request("invalid_body", "a raw image body must arrive base64-encoded (isBase64Encoded)")
        image = _b64decode(body, limits, what="body")
        top_k = _parse_top_k(query_top_k, limits)
        return PredictionRequest(image, sniff_image_type(image), top_k)
    if content_type == JSON_TYPE:
        document = _parse_json_body(body, encoded, limits)
        image = _decode_image_field(document.get("image"), limits)
        top_k = _merge_top_k(document.get("top_k"), query_top_k, limits)
        return PredictionRequest(image, sniff_image_type(image), top_k)
    if not content_type:
        raise unsupported("unsupported_media_type", "the request has no content-type; send image/* or JSON")
    allowed = "image/jpeg, image/png, image/webp or application/json"
    raise unsupported(
        "unsupported_media_type", f"content-type {content_type[:80]!r} is not supported; use {allowed}"
    )


def _http_method(event: dict[str, Any]) -> str:
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    method = http.get("method") if isinstance(http, dict) else event.get("httpMethod")
    return method.upper() if isinstance(method, str) else ""


def _header(headers: dict[str, Any], name: str) -> str:
    # Payload 2.0 lower-cases header names; API Gateway REST (1.0) keeps the caller's casing.
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return value if isinstance(value, str) else ""
    return ""


def _parse_json_body(body: str, encoded: bool, limits: Limits) -> dict[str, Any]:
    # The image inside is base64 (4/3 of its size), maybe line-wrapped with escaped "\n" or "\r\n"
    # (up to 4 characters per 76) and with "/" escaped as "\/": an eighth more. A base64-flagged body
    # is 4/3 of all that again. The exact check is on the decoded image.
    max_chars = _max_b64_chars(limits) * 9 // 8 + 4096
    if encoded:
        max_chars = (max_chars + 2) // 3 * 4
    if len(body) > max_chars:
        raise too_large(f"the request is larger than the {limits.max_image_bytes}-byte image limit allows")
    text = body
    if encoded:
        try:
            text = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise bad_request("invalid_json", "the body is not valid base64-encoded UTF-8 JSON") from None
    # json.loads of 6 MB of "[],[],..." or '"ab","ab",...' builds millions of objects (~150 MB, about
    # 25 bytes per byte of body: enough to run a small function out of memory). Counting commas first
    # bounds that, for ~0.3 ms per MB.
    if text.count(",") > MAX_JSON_COMMAS:
        raise bad_request(
            "invalid_json",
            f'the JSON body has more than {MAX_JSON_COMMAS} commas; send {{"image": "<base64>", "top_k": N}}',
        )
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise bad_request("invalid_json", "the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise bad_request("invalid_json", 'the JSON body must be an object like {"image": "<base64>"}')
    return document


def _decode_image_field(value: Any, limits: Limits) -> bytes:
    if value is None or value == "":
        raise bad_request("missing_image", 'no image: send {"image": "<base64 of a JPEG, PNG or WebP>"}')
    if not isinstance(value, str):
        raise bad_request("invalid_image", "image must be a base64 string")
    if value.startswith("data:"):
        # Browsers produce data URLs ("data:image/png;base64,...."); the payload after the comma is ours.
        header, _, value = value.partition(",")
        if not header.endswith(";base64"):
            raise bad_request("invalid_base64", "a data URL image must be base64-encoded")
    elif value[:8].lower().startswith(("http://", "https://")):
        raise bad_request("invalid_base64", "image must be base64 data; URLs are not fetched")
    return _b64decode(value, limits, what="image")


def _b64decode(text: str, limits: Limits, *, what: str) -> bytes:
    # Checked on the encoded length first: no decoding (and no memory) spent on an oversized upload.
    # Line breaks are allowed for (up to "\r\n" every 76 characters); the exact check is on the bytes.
    if len(text) > _max_b64_chars(limits) * 17 // 16 + 1024:
        raise too_large(f"the image is larger than the limit of {limits.max_image_bytes} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        # Line-wrapped base64 (e.g. from `base64` without -w0) is fine too. Tried second because the
        # copy without whitespace costs ~0.8 ms on a 2.3 MB photo (docs/benchmarks.md, serving path).
        # One bytes copy, not "".join(text.split()): "AB AB AB ..." split into millions of strings
        # (~150 MB for a 6 MB body). Non-ASCII text is not base64 (UnicodeEncodeError is a ValueError).
        try:
            data = base64.b64decode(text.encode("ascii").translate(None, BASE64_WHITESPACE), validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("invalid_base64", f"the {what} is not valid base64") from None
    if not data:
        raise bad_request("missing_image", f"the {what} is empty")
    if len(data) > limits.max_image_bytes:
        raise too_large(f"the image is {len(data)} bytes; the limit is {limits.max_image_bytes} bytes")
    return data


def _max_b64_chars(limits: Limits) -> int:
    return (limits.max_image_bytes + 2) // 3 * 4


def _merge_top_k(body_value: Any, query_value: Any, limits: Limits) -> int:
    if body_value is not None and query_value is not None:
        from_body = _parse_top_k(body_value, limits)
        if from_body != _parse_top_k(query_value, limits):
            raise bad_request(
                "invalid_top_k", "top_k is given twice, in the body and the query, with different values"
            )
        return from_body
    return _parse_top_k(body_value if body_value is not None else query_value, limits)


def _parse_top_k(value: Any, limits: Limits) -> int:
    if value is None:
        return limits.default_top_k
    if isinstance(value, str):
        text = value.strip()
        value = int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else value
    # bool is an int subclass: {"top_k": true} is a mistake, not 1.
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limits.max_top_k:
        return value
    raise ApiError(400, "invalid_top_k", f"top_k must be an integer from 1 to {limits.max_top_k}")
