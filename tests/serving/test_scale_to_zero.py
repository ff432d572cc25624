"""The prediction API on a stage whose inference component scales to zero copies while idle.

The Lambda handler runs as in Lambda (fresh import, real botocore) against a local endpoint that hosts
the model as one inference component. At zero copies SageMaker answers every request with a 400
ValidationError, "Inference Component has no capacity to process this request...", and counts it in
``NoCapacityInvocationFailures``, whose alarm scales the component out: the caller's first request
starts the model, which answers again minutes later. The API tells the caller so (503
``model_starting`` with ``Retry-After``) instead of calling the endpoint unavailable.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import endpoint_errors
import pytest
import sample_images as images
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from serving_helpers import ENDPOINT_NAME, b64, call, last_log, load_handler, runtime_client

from localdev.local_endpoint import (
    COMPONENT_REQUIRED_MESSAGE,
    INFERENCE_COMPONENT_HEADER,
    NO_CAPACITY_MESSAGE,
    LocalEndpoint,
)

COMPONENT = "dog-breeds-test-component"
# What SageMaker's no-capacity message says, none of which is the caller's business.
AWS_TEXT = ("capacity", "ApplicationAutoScaling", "UpdateInferenceComponentRuntimeConfig", COMPONENT)


@pytest.fixture(scope="module")
def scaling_endpoint(artifact_dir):
    """An endpoint hosting the model as inference component COMPONENT."""
    with LocalEndpoint(artifact_dir, name=ENDPOINT_NAME, inference_component=COMPONENT) as running:
        yield running


@pytest.fixture(autouse=True)
def one_copy(scaling_endpoint):
    """Every test starts with one copy of the component, whatever the test before it did."""
    scaling_endpoint.scale_out()
    yield
    scaling_endpoint.scale_out()


@pytest.fixture(scope="module")
def api(scaling_endpoint):
    """The handler as the stage's API stack configures it: endpoint and component named."""
    return load_handler(scaling_endpoint.url, INFERENCE_COMPONENT_NAME=COMPONENT)


def request() -> dict:
    return {"image": b64(images.jpeg()), "top_k": 3}


# --- the API --------------------------------------------------------------------------------------


def test_the_first_request_at_zero_copies_is_503_model_starting_and_starts_the_scale_out(
    scaling_endpoint, api, capsys
):
    scaling_endpoint.scale_to_zero()
    failures_before = scaling_endpoint.no_capacity_failures

    status, body, headers = call(api, request())  # also checks request_id and that nothing leaks

    assert (status, body["error"]["code"]) == (503, "model_starting")
    assert "starting" in body["error"]["message"] and "Retry-After" in body["error"]["message"]
    assert headers["retry-after"] == "60"
    assert body["request_id"] == "req-1234"
    assert not any(text in json.dumps(body) for text in AWS_TEXT)
    # What SageMaker's NoCapacityInvocationFailures would count: the request that triggers the alarm.
    assert scaling_endpoint.no_capacity_failures == failures_before + 1
    log = last_log(capsys)
    assert (log["level"], log["error_code"], log["endpoint_error"]) == (
        "ERROR",
        "model_starting",
        "NoCapacity",
    )
    assert log["attempts"] == 1


def test_once_the_component_has_scaled_out_the_same_request_is_answered(scaling_endpoint, api, class_names):
    scaling_endpoint.scale_to_zero()
    assert call(api, request())[0] == 503

    scaling_endpoint.scale_out()
    failures = scaling_endpoint.no_capacity_failures
    status, body, _ = call(api, request())

    assert status == 200
    assert len(body["predictions"]) == 3
    assert all(class_names[p["index"]] == p["breed"] for p in body["predictions"])
    assert scaling_endpoint.no_capacity_failures == failures


def test_a_handler_naming_another_component_is_endpoint_unavailable_not_model_starting(
    scaling_endpoint, capsys
):
    """A wrong INFERENCE_COMPONENT_NAME is a misconfiguration that waiting does not fix."""
    misnamed = load_handler(scaling_endpoint.url, INFERENCE_COMPONENT_NAME="retired-component")
    failures = scaling_endpoint.no_capacity_failures

    status, body, headers = call(misnamed, request())

    assert (status, body["error"]["code"]) == (503, "endpoint_unavailable")
    assert headers["retry-after"] == "5"
    assert "retired-component" not in json.dumps(body)
    assert last_log(capsys)["endpoint_error"] == "ValidationError"
    assert scaling_endpoint.no_capacity_failures == failures


def test_a_handler_naming_no_component_on_a_component_endpoint_is_endpoint_unavailable(
    scaling_endpoint, capsys
):
    """INFERENCE_COMPONENT_NAME missing from the stage's function: SageMaker requires the header."""
    unnamed = load_handler(scaling_endpoint.url)
    status, body, _ = call(unnamed, request())
    assert (status, body["error"]["code"]) == (503, "endpoint_unavailable")
    assert last_log(capsys)["endpoint_error"] == "ValidationError"


def test_a_handler_naming_a_component_on_an_endpoint_without_one_is_endpoint_unavailable(endpoint):
    """The shared endpoint fixture serves a production variant and hosts no component."""
    status, body, _ = call(load_handler(endpoint.url, INFERENCE_COMPONENT_NAME=COMPONENT), request())
    assert (status, body["error"]["code"]) == (503, "endpoint_unavailable")


@pytest.mark.parametrize(
    "message",
    [
        "Endpoint dog-breeds of account 000000000000 not found.",
        COMPONENT_REQUIRED_MESSAGE,
        "Inference Component other is not deployed on endpoint dog-breeds.",
        "Request payload exceeds the 6 MB limit",
        "1 validation error detected: Value at 'inferenceComponentName' failed to satisfy constraint",
        "Endpoint has no capacity",  # says capacity, but not that an inference component lacks it
    ],
)
def test_other_validation_errors_stay_endpoint_unavailable(api, message):
    with Stubber(api.RUNTIME) as stub:
        stub.add_client_error(
            "invoke_endpoint",
            service_error_code="ValidationError",
            service_message=message,
            http_status_code=400,
        )
        status, body, _ = call(api, request())
    assert (status, body["error"]["code"]) == (503, "endpoint_unavailable")


def test_the_no_capacity_message_is_only_model_starting_as_a_validation_error(api):
    """The same words under another error code (here a server fault) are not the scale-to-zero answer."""
    with Stubber(api.RUNTIME) as stub:
        stub.add_client_error(
            "invoke_endpoint",
            service_error_code="InternalFailure",
            service_message=NO_CAPACITY_MESSAGE,
            http_status_code=500,
        )
        status, body, _ = call(api, request())
    assert (status, body["error"]["code"]) == (503, "endpoint_unavailable")


@pytest.mark.parametrize(
    "message",
    [
        NO_CAPACITY_MESSAGE,
        "Inference Component has no capacity to process this request.",  # the advice reworded or dropped
        "inference component  has no\ncapacity to process this request",
    ],
)
def test_the_no_capacity_detection_reads_the_sentence_not_its_exact_bytes(message):
    assert endpoint_errors.is_no_capacity(message)


@pytest.mark.parametrize("message", ["", "has no capacity", "Inference Component not found", None, 400])
def test_the_no_capacity_detection_needs_the_component_and_the_phrase(message):
    assert not endpoint_errors.is_no_capacity(message)


@pytest.mark.parametrize(
    "name",
    ["-component", "component-", "dog_breeds", "dog.breeds", "a" * 64, "component\n", "compo nent"],
)
def test_an_invalid_component_name_fails_the_functions_init(scaling_endpoint, name):
    with pytest.raises(Exception, match="INFERENCE_COMPONENT_NAME") as failure:
        load_handler(scaling_endpoint.url, INFERENCE_COMPONENT_NAME=name)
    assert type(failure.value).__name__ == "ConfigurationError"


def test_an_empty_component_name_is_no_component(api):
    settings = api.Settings.from_environment({"ENDPOINT_NAME": ENDPOINT_NAME, "INFERENCE_COMPONENT_NAME": ""})
    assert settings.inference_component_name is None
    longest = "a" * 63
    settings = api.Settings.from_environment(
        {"ENDPOINT_NAME": ENDPOINT_NAME, "INFERENCE_COMPONENT_NAME": longest}
    )
    assert settings.inference_component_name == longest


# --- the local endpoint: SageMaker's answers, as boto3 and the wire see them -----------------------


def test_at_zero_copies_the_endpoint_answers_what_sagemaker_does(scaling_endpoint):
    scaling_endpoint.scale_to_zero()
    http_request = urllib.request.Request(  # noqa: S310 - loopback
        f"{scaling_endpoint.url}/endpoints/{ENDPOINT_NAME}/invocations",
        data=images.jpeg(),
        method="POST",
        headers={"Content-Type": "image/jpeg", INFERENCE_COMPONENT_HEADER: COMPONENT},
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(http_request, timeout=30)  # noqa: S310 - loopback
    assert answer.value.code == 400
    assert answer.value.headers["x-amzn-ErrorType"] == "ValidationError:"
    assert json.loads(answer.value.read()) == {"message": NO_CAPACITY_MESSAGE}

    with pytest.raises(ClientError) as raised:
        runtime_client(scaling_endpoint.url).invoke_endpoint(
            EndpointName=ENDPOINT_NAME,
            InferenceComponentName=COMPONENT,
            ContentType="image/jpeg",
            Body=images.jpeg(),
        )
    assert raised.value.response["Error"] == {"Code": "ValidationError", "Message": NO_CAPACITY_MESSAGE}


def test_only_requests_for_the_scaled_component_count_as_no_capacity_failures(scaling_endpoint):
    scaling_endpoint.scale_to_zero()
    client = runtime_client(scaling_endpoint.url)
    failures = scaling_endpoint.no_capacity_failures
    for component in ("another-component", None):
        named = {"InferenceComponentName": component} if component else {}
        with pytest.raises(ClientError) as raised:
            client.invoke_endpoint(
                EndpointName=ENDPOINT_NAME, ContentType="image/jpeg", Body=images.jpeg(), **named
            )
        assert raised.value.response["Error"]["Code"] == "ValidationError"
        assert raised.value.response["Error"]["Message"] != NO_CAPACITY_MESSAGE
    assert scaling_endpoint.no_capacity_failures == failures


def test_an_endpoint_without_a_component_cannot_scale_to_zero(endpoint):
    assert endpoint.inference_component is None and endpoint.copies is None
    with pytest.raises(RuntimeError, match="no inference component"):
        endpoint.scale_to_zero()
