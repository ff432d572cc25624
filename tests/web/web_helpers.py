"""Helpers for the browser tests (importable, unlike conftest.py)."""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field

import sample_images
from PIL import Image

# How Chromium 150 reports in the console what the policy blocks: "Applying inline style violates the
# following Content Security Policy directive ...", "Loading the image '...' violates ...", and for
# Trusted Types "This document requires 'TrustedHTML' assignment."; and every 4xx/5xx response.
CSP_REFUSAL = re.compile(r"Content Security Policy|requires 'Trusted\w+' assignment")
_FAILED_RESOURCE = re.compile(r"^Failed to load resource: the server responded with a status of (\d{3})")
PERCENT = re.compile(r"^(<0\.1|\d{1,3}\.\d)%$")


@dataclass
class PageLog:
    """What the page said in the console and what it threw, recorded from before it loads."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def csp_refusals(self) -> list[str]:
        return [text for text in self.console_errors if CSP_REFUSAL.search(text)]

    def unexpected(self, *expected_statuses: int) -> list[str]:
        """Console errors and exceptions other than Chromium's line for a response of an expected status."""
        errors = []
        for text in self.console_errors:
            failed = _FAILED_RESOURCE.match(text)
            if failed is None or int(failed.group(1)) not in expected_statuses:
                errors.append(text)
        return errors + self.page_errors


def record(page) -> PageLog:
    log = PageLog()
    page.on("console", lambda message: message.type == "error" and log.console_errors.append(message.text))
    page.on("pageerror", lambda error: log.page_errors.append(str(error)))
    return log


def photo_jpeg(width: int, height: int) -> bytes:
    """A camera-sized JPEG of the serving tests' asymmetric scene (quality 90)."""
    return sample_images.jpeg(width, height)


def photo_png() -> bytes:
    """An RGBA PNG (transparent pixels: the page must flatten them for its JPEG)."""
    return sample_images.png_rgba()


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG", image.format
        return image.size


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def api_body(code: str, message: str, request_id: str = "req-test-1") -> str:
    """A body in the API's error shape (docs/serving.md, Responses)."""
    return json.dumps({"error": {"code": code, "message": message}, "request_id": request_id})


def shown_predictions(page) -> list[tuple[str, str]]:
    """(breed, percentage) of each rendered row, in order."""
    rows = page.locator("#predictions li")
    return [
        (rows.nth(i).locator(".breed").inner_text(), rows.nth(i).locator(".probability").inner_text())
        for i in range(rows.count())
    ]
