"""The web page in headless Chromium, served by ``localdev.serve`` under the production CSP.

A photo, a non-image file, the keyboard-only path and a stage scaled to zero run the whole local stack:
page -> payload-hash check -> Function URL event -> lambda/handler.py -> local endpoint -> the model. The
other rows of the API's status table, and what CloudFront and its firewall answer themselves, are
fulfilled by Playwright's router in place of the site: the page must explain each, with the API's own
message and the request id.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from playwright.sync_api import Error as PlaywrightError
from web_helpers import (
    PERCENT,
    api_body,
    image_size,
    photo_jpeg,
    photo_png,
    record,
    sha256_hex,
    shown_predictions,
)

from localdev.function_url import PAYLOAD_TOO_LARGE_MESSAGE, SIGNATURE_MISMATCH_MESSAGE
from localdev.local_endpoint import LocalEndpoint
from localdev.local_invoke import load_prediction_handler
from localdev.serve import LocalSite
from stacks.security_headers import CONTENT_SECURITY_POLICY, SECURITY_HEADERS

API = "**/api/predict*"
# The page's MAX_SHORT_SIDE (web/app.js): the short side of every photo it sends, and the note says so.
SENT_SHORT_SIDE = 512


def choose(page, name: str, mime_type: str, data: bytes) -> None:
    page.set_input_files("#photo", files=[{"name": name, "mimeType": mime_type, "buffer": data}])


def open_page(page, site) -> None:
    response = page.goto(site.url)
    assert response is not None and response.status == 200
    # The page is tested under the headers production sends, the CSP above all.
    assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS


# --- the whole stack -------------------------------------------------------------------------------


def test_a_photo_is_reduced_hashed_sent_and_its_top_5_shown(page, site, class_names, screenshot_path):
    log = record(page)
    open_page(page, site)
    original = photo_jpeg(1600, 1200)
    with page.expect_response(API) as answered:
        choose(page, "spaniel.jpg", "image/jpeg", original)
    response = answered.value
    request = response.request
    sent = request.post_data_buffer

    assert request.method == "POST" and request.url == f"{site.url}api/predict?top_k=5"
    assert request.headers["content-type"] == "image/jpeg"
    # What CloudFront's OAC signs with and Lambda checks (the local site refused nothing: 200).
    assert request.headers["x-amz-content-sha256"] == sha256_hex(sent)
    assert response.status == 200
    assert image_size(sent) == (683, SENT_SHORT_SIDE)  # 1600x1200 reduced, aspect kept
    assert len(sent) < len(original)

    body = response.json()
    page.locator("#results").wait_for(state="visible")
    shown = shown_predictions(page)
    assert len(shown) == 5
    assert [breed for breed, _ in shown] == [p["breed"] for p in body["predictions"]]
    assert all(breed in class_names for breed, _ in shown)
    for (_, share), prediction in zip(shown, body["predictions"], strict=True):
        assert PERCENT.match(share), share
        assert abs(float(share.rstrip("%")) - 100 * prediction["probability"]) <= 0.05 + 1e-9
    assert page.locator("#predictions meter").count() == 5
    # The rank numbers are the <ol>'s markers, which only a list-item <li> has (a grid <li> loses them).
    items = page.locator("#predictions li")
    styles = items.evaluate_all(
        "rows => rows.map(r => [getComputedStyle(r).display, getComputedStyle(r).listStyleType])"
    )
    assert styles == [["list-item", "decimal"]] * 5
    assert page.locator("#results").get_attribute("aria-busy") is None
    request_id = body["request_id"]
    assert request_id == response.headers["x-request-id"]
    assert page.locator("#request-id").inner_text() == f"Request id: {request_id}"
    assert page.locator("#status").inner_text().startswith(f"Done: most likely {shown[0][0]} (")
    assert page.locator("#problem").is_hidden()
    assert page.locator("#preview-image").is_visible()
    assert f"{SENT_SHORT_SIDE} pixels on its short side" in page.locator(".privacy").inner_text()
    assert log.unexpected() == []  # no CSP refusal, no error, no exception
    page.screenshot(path=screenshot_path("web-predictions.png"), full_page=True)


def test_a_file_the_browser_cannot_open_goes_as_it_is_and_the_api_says_why(page, site, screenshot_path):
    log = record(page)
    open_page(page, site)
    notes = b"shopping list: dog food, a lead\n"
    with page.expect_response(API) as answered:
        choose(page, "notes.txt", "text/plain", notes)
    response = answered.value
    request = response.request

    assert request.post_data_buffer == notes  # the API judges what is an image, not the page
    assert request.headers["content-type"] == "text/plain"
    assert request.headers["x-amz-content-sha256"] == sha256_hex(notes)
    assert response.status == 415
    body = response.json()
    problem = page.locator("#problem")
    problem.wait_for(state="visible")
    assert page.locator("#problem-title").inner_text() == "This file type is not supported (HTTP 415)"
    assert (
        page.locator("#problem-api-message").inner_text() == f"The service said: “{body['error']['message']}”"
    )
    assert page.locator("#problem-request").inner_text() == f"Request id: {body['request_id']}"
    assert page.locator("#results").is_hidden() and page.locator("#preview-image").is_hidden()
    assert "cannot open the file as an image" in page.locator("#preview-caption").inner_text()
    assert page.locator("#status").inner_text().startswith("This file type is not supported")
    assert log.unexpected(415) == []
    page.screenshot(path=screenshot_path("web-error.png"), full_page=True)


def test_a_wrong_payload_hash_is_refused_by_the_local_function_url_as_lambda_would(page, site):
    """The other tests' 200 and 415 prove the page's hash; this one that the site checks it at all."""
    open_page(page, site)

    def tamper(route):
        route.continue_(headers={**route.request.headers, "x-amz-content-sha256": "0" * 64})

    page.route(API, tamper)
    with page.expect_response(API) as answered:
        choose(page, "spaniel.jpg", "image/jpeg", photo_jpeg(320, 240))
    assert answered.value.status == 403
    page.locator("#problem").wait_for(state="visible")
    assert page.locator("#problem-title").inner_text() == "The service refused the request (HTTP 403)"
    assert SIGNATURE_MISMATCH_MESSAGE in page.locator("#problem-api-message").inner_text()


def test_the_csp_is_enforced_and_the_page_violates_none_of_it(page, site):
    log = record(page)
    open_page(page, site)
    with page.expect_response(API):
        choose(page, "spaniel.jpg", "image/jpeg", photo_jpeg(640, 480))
    page.locator("#results").wait_for(state="visible")
    assert log.csp_refusals() == []
    # What the policy blocks is blocked on this page, and the same listener hears of it: an inline
    # style, an image and a request to another origin.
    with pytest.raises(PlaywrightError, match="Content Security Policy"):
        page.add_style_tag(content="body { color: red }")
    page.evaluate("document.body.append(Object.assign(new Image(), {src: 'https://example.com/dog.png'}))")
    assert (
        page.evaluate("fetch('https://example.com/api/predict').then(() => 'sent', () => 'refused')")
        == "refused"
    )
    # Chromium reports each violation asynchronously, the image's after its load is refused.
    directives = ("style-src 'self'", "img-src 'self' blob: data:", "connect-src 'self'")
    wait_until(page, lambda: all(d in "\n".join(log.csp_refusals()) for d in directives), timeout_ms=10_000)
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY


def test_trusted_types_are_enforced_so_no_html_string_reaches_the_dom(page, site):
    """require-trusted-types-for 'script' with no policy: an HTML sink given a string throws."""
    log = record(page)
    open_page(page, site)
    thrown = page.evaluate(
        """() => {
            const element = document.createElement("div");
            try {
                element.innerHTML = "<b>x</b>";
            } catch (error) {
                return [error.constructor.name, element.childNodes.length];
            }
            return ["assigned", element.childNodes.length];
        }"""
    )
    assert thrown == ["TypeError", 0]
    wait_until(page, lambda: log.csp_refusals() != [])
    assert "TrustedHTML" in "\n".join(log.csp_refusals())


FOCUS_RING = "element => (s => [s.outlineStyle, s.outlineWidth])(getComputedStyle(element))"


def test_keyboard_only_the_drop_zone_opens_the_file_picker(page, site, class_names):
    # Listened to before the page loads, and for the whole test: Playwright turns Chromium's file-chooser
    # interception on without waiting, and a chooser opened before it is on is lost, blocking the next.
    choosers = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    sent = []
    page.on("request", lambda request: "/api/predict" in request.url and sent.append(request))
    open_page(page, site)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "drop-zone"
    assert page.locator("#drop-zone").evaluate(FOCUS_RING) == ["solid", "3px"]  # visible focus
    page.keyboard.press("Enter")
    wait_until(page, lambda: len(choosers) == 1)
    choosers[0].set_files([])  # dismissed without a file: nothing is sent
    page.keyboard.press(" ")
    wait_until(page, lambda: len(choosers) == 2)
    assert sent == [] and page.locator("#status").inner_text() == ""
    with page.expect_response(API):
        choosers[1].set_files(files=[{"name": "dog.png", "mimeType": "image/png", "buffer": photo_png()}])
    page.locator("#results").wait_for(state="visible")
    assert shown_predictions(page)[0][0] in class_names
    assert len(sent) == 1  # the one photo chosen, once
    assert page.locator("#chosen-file").inner_text() == "Chosen: dog.png"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "photo"  # then the labelled file input
    label = page.locator("label[for=photo]")
    assert label.inner_text() == "Choose a photo"
    # The input is visually hidden (it is emptied after each pick); its label, the visible button,
    # draws the focus ring.
    assert label.evaluate(FOCUS_RING) == ["solid", "3px"]


def test_a_photo_dropped_on_the_drop_zone_is_classified(page, site, class_names):
    log = record(page)
    open_page(page, site)
    dropped = page.evaluate_handle(
        """b64 => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.jpg", {type: "image/jpeg"}));
            return transfer;
        }""",
        base64.b64encode(photo_jpeg(800, 600)).decode(),
    )
    page.dispatch_event("#drop-zone", "dragover", {"dataTransfer": dropped})
    assert "dragging" in page.locator("#drop-zone").get_attribute("class")
    with page.expect_response(API) as answered:
        page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
    assert image_size(answered.value.request.post_data_buffer) == (683, SENT_SHORT_SIDE)
    page.locator("#results").wait_for(state="visible")
    assert shown_predictions(page)[0][0] in class_names
    assert "dragging" not in page.locator("#drop-zone").get_attribute("class")
    assert (
        page.locator("#preview-caption").inner_text().startswith("dropped.jpg: sent as a 683 \u00d7 512 JPEG")
    )
    assert log.unexpected() == []


def test_the_same_photo_can_be_chosen_again_after_a_refusal(page, site, tmp_path):
    """A file input fires no change for the file it already holds: the page empties it after each pick.

    Chosen by path, as a person's file chooser does (Chromium compares the files with the input's);
    Playwright's in-memory files are new File objects each time and would hide the problem."""
    path = tmp_path / "spaniel.jpg"
    path.write_bytes(photo_jpeg(320, 240))
    seen = []

    def too_large(route):
        seen.append(route.request.post_data_buffer)
        route.fulfill(
            status=413, headers={"content-type": "text/html"}, body="<h1>413 Request Too Large</h1>"
        )

    page.route(API, too_large)
    open_page(page, site)
    for attempt in (1, 2):
        page.set_input_files("#photo", str(path))
        wait_until(page, lambda attempt=attempt: len(seen) == attempt)
        page.locator("#problem").wait_for(state="visible")
        assert page.locator("#problem-title").inner_text() == "This photo is too large (HTTP 413)"
        assert page.eval_on_selector("#photo", "input => [input.value, input.files.length]") == ["", 0]
        assert page.locator("#chosen-file").inner_text() == "Chosen: spaniel.jpg"
    assert seen[0] == seen[1]


def wait_until(page, condition, timeout_ms: int = 5000) -> None:
    for _ in range(timeout_ms // 50):
        if condition():
            return
        page.wait_for_timeout(50)
    raise AssertionError("the page did not get there in time")


# --- every other answer, from the API or the front door --------------------------------------------

CF_ID = "Zk8C3v7x1Q_example-cloudfront-id=="
WAF_403_PAGE = (
    "<html><head><title>403 Forbidden</title></head><body><h1>403 ERROR</h1>Request blocked.</body></html>"
)


def edge_answer(status: int, body: str = "", content_type: str = "text/html") -> dict:
    """An answer CloudFront makes itself (an error page, or nothing): no request id, its x-amz-cf-id."""
    return {"status": status, "headers": {"content-type": content_type, "x-amz-cf-id": CF_ID}, "body": body}


def lambda_answer(status: int, error_type: str, body: dict) -> dict:
    """What Lambda's Function URL answers before the function runs: an AWS error, its type in a header."""
    headers = {
        "content-type": "application/json",
        "x-amzn-errortype": error_type,
        "x-amzn-requestid": "3f2a9c1e-lambda",
        "x-amz-cf-id": CF_ID,
    }
    return {"status": status, "headers": headers, "body": json.dumps(body)}


def json_answer(status: int, code: str, message: str, retry_after: str | None = None) -> dict:
    headers = {"content-type": "application/json", "x-request-id": "req-test-1"}
    if retry_after:
        headers["retry-after"] = retry_after
    return {"status": status, "headers": headers, "body": api_body(code, message)}


ANSWERS = {
    "400 invalid_image": (
        json_answer(400, "invalid_image", "the image is not a JPEG, PNG or WebP file"),
        "This file could not be classified (HTTP 400)",
        "Choose a JPEG, PNG or WebP photo.",
    ),
    "413 image_too_large": (
        json_answer(413, "image_too_large", "the image is 5000000 bytes; the limit is 4194304 bytes"),
        "This photo is too large (HTTP 413)",
        "Choose a smaller photo",
    ),
    "415 unsupported_image_format": (
        json_answer(415, "unsupported_image_format", "GIF images are not supported; send JPEG, PNG or WebP"),
        "This file type is not supported (HTTP 415)",
        "Choose a JPEG, PNG or WebP photo.",
    ),
    "429 throttled": (
        json_answer(429, "throttled", "the model endpoint is busy; retry after a short wait", "1"),
        "The classifier is busy (HTTP 429)",
        "Try again in 1 second.",
    ),
    "502 model_error": (
        json_answer(502, "model_error", "the model failed to process the image"),
        "The classifier failed on this photo (HTTP 502)",
        "try another photo",
    ),
    "503 endpoint_unavailable": (
        json_answer(503, "endpoint_unavailable", "the model endpoint is unavailable; retry later", "5"),
        "The classifier is unavailable (HTTP 503)",
        "Try again in 5 seconds.",
    ),
    "504 endpoint_timeout": (
        json_answer(504, "endpoint_timeout", "the model endpoint did not answer in time"),
        "The classifier took too long to answer (HTTP 504)",
        "Try again in a moment.",
    ),
    "502 internal_error": (
        json_answer(502, "internal_error", "the request could not be completed"),
        "The classifier could not answer (HTTP 502)",
        "send the reference below to the site's operator",
    ),
    "403 from the firewall (CloudFront's HTML page)": (
        edge_answer(403, WAF_403_PAGE),
        "Blocked by the site's firewall (HTTP 403)",
        "Wait a few minutes and try again",
    ),
    "403 from Lambda: the payload hash (InvalidSignatureException)": (
        lambda_answer(403, "InvalidSignatureException", {"message": SIGNATURE_MISMATCH_MESSAGE}),
        "The service refused the request (HTTP 403)",
        "checksum failed",
    ),
    "403 from Lambda: the site may not invoke it (AccessDeniedException)": (
        lambda_answer(403, "AccessDeniedException", {"Message": "Forbidden"}),
        "The site is not allowed to reach the classifier (HTTP 403)",
        "a problem with the site's set-up",
    ),
    "413 from CloudFront (HTML)": (
        edge_answer(413, "<html><body><h1>413 ERROR</h1>Request Entity Too Large</body></html>"),
        "This photo is too large (HTTP 413)",
        "Choose a smaller photo",
    ),
    "413 from Lambda (RequestEntityTooLargeException)": (
        lambda_answer(413, "RequestEntityTooLargeException", {"message": PAYLOAD_TOO_LARGE_MESSAGE}),
        "This photo is too large (HTTP 413)",
        "Choose a smaller photo",
    ),
    "429 from Lambda: its concurrency is used up (TooManyRequestsException)": (
        lambda_answer(429, "TooManyRequestsException", {"Message": "Rate Exceeded."}),
        "The classifier is busy (HTTP 429)",
        "Try again in a moment.",
    ),
    "429 that is not JSON": (
        edge_answer(429, "<h1>429 Too Many Requests</h1>"),
        "Too many requests from your network (HTTP 429)",
        "Wait a few minutes and try again.",
    ),
    "502 from CloudFront (HTML)": (
        edge_answer(502, "<h1>502 ERROR</h1>The request could not be satisfied."),
        "The classifier could not answer (HTTP 502)",
        "Try again in a minute",
    ),
    "503 from CloudFront (HTML)": (
        edge_answer(503, "<h1>503 ERROR</h1>The request could not be satisfied."),
        "The classifier is unavailable (HTTP 503)",
        "Try again in a moment.",
    ),
    "504 from CloudFront, empty": (
        edge_answer(504, "", content_type="text/plain"),
        "The classifier took too long to answer (HTTP 504)",
        "Try again in a moment.",
    ),
    "429 from the firewall's rate limit": (
        {
            "status": 429,
            "headers": {"content-type": "application/json", "x-amz-cf-id": CF_ID},
            "body": json.dumps({"error": {"code": "rate_limited", "message": "too many requests"}}),
        },
        "Too many requests from your network (HTTP 429)",
        "Wait a few minutes and try again.",
    ),
    "500 that is not the API's JSON": (
        edge_answer(500, "<h1>oops</h1>"),
        "Unexpected answer from the server (HTTP 500)",
        "Try again in a minute.",
    ),
    "200 that is not the API's JSON": (
        edge_answer(200, "maintenance", content_type="text/plain"),
        "Unexpected answer from the server (HTTP 200)",
        "Try again in a minute.",
    ),
}


def shown_message(body: str) -> str | None:
    """The message the page quotes: the API's error.message, an AWS error's message or Message."""
    if not body.startswith("{"):
        return None
    document = json.loads(body)
    return document.get("error", {}).get("message") or document.get("message") or document.get("Message")


@pytest.mark.parametrize(("answer", "title", "advice"), ANSWERS.values(), ids=ANSWERS.keys())
def test_each_failure_is_explained_with_the_api_message_and_the_request_id(page, site, answer, title, advice):
    log = record(page)
    open_page(page, site)
    page.route(API, lambda route: route.fulfill(**answer))
    choose(page, "spaniel.jpg", "image/jpeg", photo_jpeg(320, 240))
    page.locator("#problem").wait_for(state="visible")

    assert page.locator("#problem-title").inner_text() == title
    assert advice in page.locator("#problem-detail").inner_text()
    message = shown_message(answer["body"])
    api_message = page.locator("#problem-api-message")
    if message:
        assert api_message.inner_text() == f"The service said: “{message}”"
    else:
        assert api_message.is_hidden()
    reference = page.locator("#problem-request").inner_text()
    if "x-request-id" in answer["headers"]:
        assert reference == "Request id: req-test-1"
    else:
        assert reference == f"CloudFront reference: {CF_ID}"
    assert page.locator("#status").inner_text().startswith(title)  # announced (aria-live)
    assert page.locator("#results").is_hidden()
    assert log.unexpected(answer["status"]) == []


def test_a_network_failure_is_explained_and_can_be_retried(page, site):
    open_page(page, site)
    page.route(API, lambda route: route.abort("failed"))
    choose(page, "spaniel.jpg", "image/jpeg", photo_jpeg(320, 240))
    page.locator("#problem").wait_for(state="visible")
    assert page.locator("#problem-title").inner_text() == "Could not reach the classifier"
    page.unroute(API)
    with page.expect_response(API) as answered:
        page.get_by_role("button", name="Try again").click()
    assert answered.value.status == 200
    page.locator("#results").wait_for(state="visible")


@pytest.fixture
def scaled_to_zero(artifact_dir):
    """A stage that serves its model as an inference component, scaled to zero copies: the real
    handler answers 503 model_starting with its Retry-After until the test scales it out."""
    component = "dogbreed-local-model"
    with LocalEndpoint(artifact_dir, name="dogbreed-local", inference_component=component) as endpoint:
        api = load_prediction_handler(endpoint.url, endpoint.name, INFERENCE_COMPONENT_NAME=component)
        site = LocalSite(("127.0.0.1", 0), api.handler).start()
        endpoint.scale_to_zero()
        try:
            yield site, endpoint
        finally:
            site.stop()


def test_model_starting_waits_retry_after_then_retries_by_itself(page, scaled_to_zero):
    site, endpoint = scaled_to_zero
    page.clock.install()  # the 60 s of Retry-After pass at the test's command
    open_page(page, site)
    with page.expect_response(API) as first:
        choose(page, "spaniel.jpg", "image/jpeg", photo_jpeg(320, 240))
    assert first.value.status == 503 and first.value.headers["retry-after"] == "60"
    page.locator("#problem").wait_for(state="visible")
    assert page.locator("#problem-title").inner_text() == "The classifier is starting (HTTP 503)"
    assert (
        page.locator("#problem-api-message")
        .inner_text()
        .startswith("The service said: “the model is starting")
    )
    assert page.locator("#status").inner_text().endswith("Trying again in 60 seconds.")
    assert page.locator("#problem-countdown").inner_text().startswith("Trying again in 60 seconds")
    page.clock.run_for(30_000)
    assert page.locator("#problem-countdown").inner_text().startswith("Trying again in 30 seconds")
    assert endpoint.no_capacity_failures == 1  # nothing was sent before Retry-After

    endpoint.scale_out()  # what the no-capacity alarm's scaling policy does, minutes later
    with page.expect_response(API) as second:
        page.clock.run_for(30_000)
    assert second.value.status == 200
    assert second.value.request.post_data_buffer == first.value.request.post_data_buffer
    page.locator("#results").wait_for(state="visible")
    assert page.locator("#problem").is_hidden()


def model_starting_then_the_server(page, retry_after: str = "60") -> list[str]:
    """Answer the first request like a stage scaled to zero, let the later ones reach the site."""
    seen: list[str] = []

    def answer(route):
        seen.append(route.request.headers["x-amz-content-sha256"])
        if len(seen) == 1:
            message = "the model is starting: retry after the Retry-After seconds"
            route.fulfill(**json_answer(503, "model_starting", message, retry_after))
        else:
            route.continue_()

    page.route(API, answer)
    return seen


def test_stop_retrying_cancels_the_automatic_retry(page, site):
    page.clock.install()
    open_page(page, site)
    seen = model_starting_then_the_server(page)
    choose(page, "spaniel.jpg", "image/jpeg", photo_jpeg(320, 240))
    page.get_by_role("button", name="Stop retrying").click()
    page.clock.run_for(300_000)
    assert len(seen) == 1
    assert page.get_by_role("button", name="Try again").is_visible()
    assert re.search(r"Stopped retrying", page.locator("#status").inner_text())


def test_automatic_retries_keep_the_problem_on_screen_and_say_so(page, site):
    """Each retry after a 503 model_starting updates the countdown and the status line; the problem box
    stays (hiding and showing it every minute would flash it and move the page)."""
    seen = []

    def starting_twice(route):
        seen.append(route.request.post_data_buffer)
        if len(seen) <= 2:
            message = "the model is starting: retry after the Retry-After seconds"
            route.fulfill(**json_answer(503, "model_starting", message, "60"))
        else:
            route.continue_()

    page.clock.install()
    open_page(page, site)
    page.route(API, starting_twice)
    choose(page, "spaniel.jpg", "image/jpeg", photo_jpeg(320, 240))
    page.locator("#problem-countdown").wait_for(state="visible")
    # From here on, every time the box is hidden is counted.
    page.evaluate(
        """() => {
            window.problemHidden = 0;
            const problem = document.getElementById("problem");
            new MutationObserver(() => { if (problem.hidden) window.problemHidden += 1; })
                .observe(problem, {attributes: true, attributeFilter: ["hidden"]});
        }"""
    )
    with page.expect_response(API):
        page.clock.run_for(60_000)
    wait_until(page, lambda: "attempt 3 of 11" in page.locator("#problem-countdown").inner_text())
    assert len(seen) == 2
    assert page.evaluate("window.problemHidden") == 0
    assert page.locator("#problem-title").inner_text() == "The classifier is starting (HTTP 503)"
    assert page.locator("#status").inner_text().endswith("Trying again in 60 seconds.")

    with page.expect_response(API) as third:
        page.clock.run_for(60_000)
    assert third.value.status == 200
    page.locator("#results").wait_for(state="visible")
    assert page.locator("#problem").is_hidden()
    assert page.evaluate("window.problemHidden") == 1  # once, for the predictions
    assert seen[0] == seen[1] == seen[2]


def test_a_failure_of_the_page_itself_is_shown_not_thrown(page, site):
    """A browser API that throws where the page expects none: a message, no unhandled rejection, and
    the results no longer marked busy."""
    log = record(page)
    open_page(page, site)
    page.evaluate("() => { URL.createObjectURL = () => { throw new Error('no object URLs today'); }; }")
    choose(page, "spaniel.jpg", "image/jpeg", photo_jpeg(320, 240))
    page.locator("#problem").wait_for(state="visible")
    assert page.locator("#problem-title").inner_text() == "Something went wrong on this page"
    assert page.locator("#status").inner_text().startswith("Something went wrong on this page")
    assert page.locator("#results").get_attribute("aria-busy") is None
    assert log.page_errors == []  # an unhandled rejection would be one
    assert [text for text in log.console_errors if "no object URLs today" not in text] == []


def test_a_checksum_the_browser_cannot_compute_is_explained(page, site):
    log = record(page)
    open_page(page, site)
    sent = []
    page.on("request", lambda request: "/api/predict" in request.url and sent.append(request))
    page.evaluate(
        "() => { crypto.subtle.digest = () => Promise.reject(new DOMException('no', 'OperationError')); }"
    )
    choose(page, "spaniel.jpg", "image/jpeg", photo_jpeg(320, 240))
    page.locator("#problem").wait_for(state="visible")
    assert page.locator("#problem-title").inner_text() == "This photo could not be prepared for sending"
    assert page.get_by_role("button", name="Try again").is_enabled()
    assert page.locator("#results").get_attribute("aria-busy") is None
    assert sent == [] and log.unexpected() == []
