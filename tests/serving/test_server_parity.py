"""Parity: the in-process emulation answers every request exactly as the DLC's real TorchServe does.

The same good and bad requests go through boto3's ``invoke_endpoint`` to both local endpoints (the runtime
front is shared; only the server behind it differs). Status, the first line of an error (the JSON the
Lambda reads) and the predictions must agree, so the fast in-process tests stand for the real stack.
"""

from __future__ import annotations

import json

import pytest
import sample_images as images
from botocore.exceptions import ClientError
from serving_helpers import ENDPOINT_NAME, runtime_client

from inference.preprocessing import MAX_JPEG_SCANS

CASES = {
    "jpeg": ("image/jpeg", images.jpeg(), None, None),
    "jpeg top_k=2": ("image/jpeg", images.jpeg(), None, "top_k=2"),
    "png rgba top_k=4": ("image/png", images.png_rgba(), None, "top_k=4"),
    "png 16-bit grey": ("image/png", images.png_16bit_grayscale(), None, None),
    "png palette": ("image/png", images.png_palette(), None, None),
    "webp": ("image/webp", images.webp(), "application/json", None),
    "jpeg cmyk as x-image": ("application/x-image", images.jpeg_cmyk(), None, None),
    "phone mpo": ("image/jpeg", images.jpeg_mpo(), None, None),
    "progressive": ("image/jpeg", images.progressive_jpeg(), None, None),
    "large jpeg, draft decode": ("image/jpeg", images.large_jpeg(), None, None),
    "content type with parameters": ("image/jpeg; charset=binary", images.jpeg(), None, None),
    "browser accept list": ("image/png", images.png_grayscale(), "application/json, text/plain, */*", None),
    # the error rows of the endpoint contract
    "gif is 415": ("image/gif", images.gif(), None, None),
    "bmp sent as jpeg is 415": ("image/jpeg", images.bmp(), None, None),
    "json body is 415": ("application/json", b'{"image": "x"}', None, None),
    "truncated is 400": ("image/jpeg", images.truncated_jpeg(), None, None),
    "not an image is 400": ("image/png", b"definitely not a png", None, None),
    "empty body is 400": ("image/jpeg", b"", None, None),
    "scan bomb is 400": ("image/jpeg", images.jpeg_scan_bomb(scans=MAX_JPEG_SCANS + 1, size=64), None, None),
    "pixel bomb is 413": ("image/png", images.png_bomb(), None, None),
    "top_k=0 is 400": ("image/jpeg", images.jpeg(), None, "top_k=0"),
    "top_k with a superscript is 400": ("image/jpeg", images.jpeg(), None, "top_k=²"),
    "xml only is 406": ("image/jpeg", images.jpeg(), "application/xml", None),
}


def answer(endpoint, content_type, body, accept, attributes):
    """What boto3 gets: (status, first line or parsed body) with the model's status for a ModelError."""
    arguments = {"EndpointName": ENDPOINT_NAME, "ContentType": content_type, "Body": body}
    if accept:
        arguments["Accept"] = accept
    if attributes:
        arguments["CustomAttributes"] = attributes
    try:
        response = runtime_client(endpoint.url).invoke_endpoint(**arguments)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "ModelError", error.response
        original = error.response["OriginalMessage"]
        return error.response["OriginalStatusCode"], original.split("\n", 1)[0], original
    return 200, json.loads(response["Body"].read()), response["ContentType"]


@pytest.fixture(scope="module")
def answers(endpoint, torchserve_endpoint):
    return {
        name: (answer(endpoint, *case), answer(torchserve_endpoint, *case)) for name, case in CASES.items()
    }


@pytest.mark.parametrize("name", list(CASES))
def test_both_servers_answer_alike(answers, name):
    (status, emulated, extra), (real_status, real, real_extra) = answers[name]
    assert status == real_status, (emulated, real)
    if status == 200:
        assert extra == real_extra == "application/json"
        assert emulated["model"] == real["model"]
        assert [p["index"] for p in emulated["predictions"]] == [p["index"] for p in real["predictions"]]
        for mine, theirs in zip(emulated["predictions"], real["predictions"], strict=True):
            assert mine["probability"] == pytest.approx(theirs["probability"], abs=1e-5)
    else:
        assert emulated == real  # the first line: {"error": {"code", "message"}}
        assert json.loads(real)["error"]["code"]
        # Both append the traceback after it (the toolkit's Transformer.handle_error).
        assert extra.split("\n", 1)[1].startswith("Traceback") and real_extra.split("\n", 1)[1].startswith(
            "Traceback"
        )


def test_the_cases_cover_every_status_of_the_endpoint_contract(answers):
    statuses = {real[0] for _, real in answers.values()}
    assert statuses == {200, 400, 406, 413, 415}


def test_container_errors_have_the_same_content_type(endpoint, torchserve_endpoint):
    emulated = endpoint.toolkit.invoke(images.gif(), {"Content-Type": "image/gif"})
    real = torchserve_endpoint.toolkit.invoke(images.gif(), {"Content-Type": "image/gif"})
    assert (
        (emulated.status, emulated.content_type)
        == (real.status, real.content_type)
        == (
            415,
            "application/octet-stream",
        )
    )
