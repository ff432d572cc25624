"""The local endpoint speaks the container contract and the SageMaker runtime API, errors included."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
import sample_images as images
from serving_helpers import ENDPOINT_NAME, runtime_client, wait_until_every_slot_is_taken

from localdev import local_invoke
from localdev.local_endpoint import LocalEndpoint, extract_model_archive

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def http(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def test_ping_and_container_invocations(endpoint):
    assert http(f"{endpoint.url}/ping")[0] == 200
    status, body, headers = http(
        f"{endpoint.url}/invocations",
        "POST",
        images.jpeg(),
        {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "top_k=2"},
    )
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert len(json.loads(body)["predictions"]) == 2


def test_container_errors_look_like_the_toolkit(endpoint):
    """Status from the handler's BaseInferenceToolkitError; body = message line + traceback."""
    status, body, _ = http(f"{endpoint.url}/invocations", "POST", images.gif(), {"Content-Type": "image/gif"})
    assert status == 415
    first_line, rest = body.decode().split("\n", 1)
    assert json.loads(first_line)["error"]["code"] == "unsupported_media_type"
    assert rest.startswith("Traceback")


def test_boto3_invoke_endpoint(endpoint, class_names):
    client = runtime_client(endpoint.url)
    response = client.invoke_endpoint(
        EndpointName=ENDPOINT_NAME,
        ContentType="image/png",
        Body=images.png_rgba(),
        CustomAttributes="top_k=3",
    )
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    body = json.loads(response["Body"].read())
    assert [p["breed"] for p in body["predictions"]] == [class_names[p["index"]] for p in body["predictions"]]
    assert len(body["predictions"]) == 3


@pytest.mark.parametrize(
    ("body", "content_type", "original_status"),
    [
        (images.truncated_jpeg(), "image/jpeg", 400),
        (images.png_bomb(), "image/png", 413),
        (images.bmp(), "image/png", 415),
    ],
    ids=["truncated", "bomb", "bmp"],
)
def test_model_client_errors_raise_model_error_like_aws(endpoint, body, content_type, original_status):
    client = runtime_client(endpoint.url)
    with pytest.raises(client.exceptions.ModelError) as raised:
        client.invoke_endpoint(EndpointName=ENDPOINT_NAME, ContentType=content_type, Body=body)
    response = raised.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["Error"]["Code"] == "ModelError"
    assert response["OriginalStatusCode"] == original_status
    assert response["LogStreamArn"].startswith("arn:aws:logs:")
    assert "Traceback" in response["OriginalMessage"]
    assert f"client error ({original_status})" in response["Error"]["Message"]


def test_a_model_beyond_the_invocation_limit_is_a_model_error_with_status_0(artifact_dir):
    """What SageMaker answers when the container does not answer /invocations within 60 s."""
    with LocalEndpoint(
        artifact_dir, name=ENDPOINT_NAME, delay_seconds=1.0, invocation_timeout_seconds=0.2
    ) as slow:
        client = runtime_client(slow.url)
        with pytest.raises(client.exceptions.ModelError) as raised:
            client.invoke_endpoint(EndpointName=ENDPOINT_NAME, ContentType="image/jpeg", Body=images.jpeg())
    response = raised.value.response
    assert response["OriginalStatusCode"] == 0
    assert "server error (0)" in response["Error"]["Message"] and "timed out" in response["Error"]["Message"]


def test_unknown_endpoint_is_a_validation_error(endpoint):
    client = runtime_client(endpoint.url)
    with pytest.raises(client.exceptions.ValidationError, match="Endpoint nope of account"):
        client.invoke_endpoint(EndpointName="nope", ContentType="image/jpeg", Body=images.jpeg())


def test_beyond_max_concurrency_is_throttling(artifact_dir):
    with LocalEndpoint(artifact_dir, name=ENDPOINT_NAME, max_concurrency=1, delay_seconds=1.0) as busy:
        client = runtime_client(busy.url)
        first = threading.Thread(
            target=client.invoke_endpoint,
            kwargs={"EndpointName": ENDPOINT_NAME, "ContentType": "image/jpeg", "Body": images.jpeg()},
        )
        first.start()
        wait_until_every_slot_is_taken(busy)
        with pytest.raises(client.exceptions.ClientError) as raised:
            client.invoke_endpoint(EndpointName=ENDPOINT_NAME, ContentType="image/jpeg", Body=images.jpeg())
        first.join()
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"


def torchserve_processes() -> set[int]:
    found = set()
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if "org.pytorch.serve.ModelServer" in (process.info["cmdline"] or []):
                found.add(process.pid)
    return found


@pytest.mark.parametrize("server", ["inprocess", "torchserve"])
def test_command_line_serves_until_sigterm(artifact_dir, server):
    before = torchserve_processes()
    process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        [
            *(
                sys.executable,
                "-m",
                "localdev.local_endpoint",
                "--model-dir",
                str(artifact_dir),
                "--port",
                "0",
            ),
            *("--name", "cli-endpoint", "--log-level", "WARNING", "--server", server),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = process.stdout.readline()
        assert "serving on http://127.0.0.1:" in first_line, first_line + process.stderr.read()
        url = first_line.rsplit(" ", 1)[-1].strip()
        client = runtime_client(url)
        response = client.invoke_endpoint(
            EndpointName="cli-endpoint", ContentType="image/jpeg", Body=images.jpeg()
        )
        assert len(json.loads(response["Body"].read())["predictions"]) == 5
        assert f"({server})" in first_line
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    # Stopping the endpoint stops TorchServe's JVM (and its workers) with it.
    assert torchserve_processes() == before


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_with_a_json_answer(endpoint, method):
    for path in ("/invocations", f"/endpoints/{ENDPOINT_NAME}/invocations", "/ping"):
        status, body, headers = http(f"{endpoint.url}{path}", method, b"{}", {"Content-Type": "image/jpeg"})
        assert status == 405, path
        assert headers["Allow"] == ("GET" if path == "/ping" else "POST")
        assert headers["Content-Type"] == "application/json"
        assert method in json.loads(body)["message"]
    # The connection's body was consumed: the endpoint still serves.
    assert http(f"{endpoint.url}/ping")[0] == 200


def test_local_invoke_classifies_through_the_lambda_handler(artifact_dir, tmp_path, capsys, class_names):
    image = tmp_path / "dog.webp"
    image.write_bytes(images.webp())
    assert local_invoke.main(["--model-dir", str(artifact_dir), "--image", str(image), "--top-k", "3"]) == 0
    output = capsys.readouterr().out
    assert "status 200" in output
    ranked = [line for line in output.splitlines() if line.strip()[:2] in {"1.", "2.", "3."}]
    assert len(ranked) == 3 and all(any(name in line for name in class_names) for line in ranked)


@pytest.mark.parametrize("top_k", [0, 1, 7])
def test_function_url_event_sends_any_top_k_it_is_given(top_k):
    """`local_invoke --top-k 0` must reach the API (a 400), not quietly become the default 5."""
    event = local_invoke.function_url_event(b"\xff\xd8\xff", "image/jpeg", top_k)
    assert event["queryStringParameters"] == {"top_k": str(top_k)}
    assert event["rawQueryString"] == f"top_k={top_k}"
    assert local_invoke.function_url_event(b"\xff\xd8\xff", "image/jpeg")["rawQueryString"] == ""


# "\u00b2" (superscript two) is a digit to str.isdigit() but not to int(): sent as the byte 0xb2.
@pytest.mark.parametrize("length", ["-1", "ten", str(7 * 1024 * 1024), "\u00b2"])
def test_bad_or_oversized_content_length_is_refused_without_reading(endpoint, length):
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=10) as connection:
        request = (
            f"POST /endpoints/{ENDPOINT_NAME}/invocations HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: image/jpeg\r\nContent-Length: {length}\r\n\r\n"
        )
        connection.sendall(request.encode("latin-1"))
        answer = connection.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 400") and "ValidationError" in answer


def test_serves_a_model_tar_gz_like_sagemaker_unpacks_it(artifact_dir, tmp_path):
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        for path in ("model.pt", "model_config.json", "code"):
            bundle.add(artifact_dir / path, arcname=path)
    with LocalEndpoint(archive, name=ENDPOINT_NAME) as served:
        extracted = Path(served.model_dir)
        assert (extracted / "code" / "inference.py").is_file()
        answer = runtime_client(served.url).invoke_endpoint(
            EndpointName=ENDPOINT_NAME, ContentType="image/jpeg", Body=images.jpeg()
        )
        assert len(json.loads(answer["Body"].read())["predictions"]) == 5
    assert not extracted.exists()  # removed on stop


@pytest.mark.parametrize("has_filters", [True, False], ids=["tarfile-filters", "python-before-3.11.4"])
def test_an_archive_escaping_its_directory_is_refused(tmp_path, monkeypatch, has_filters):
    if not has_filters:
        monkeypatch.delattr(tarfile, "data_filter")
    archive = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload"
    payload.write_text("x")
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(payload, arcname="../escaped.txt")
    with pytest.raises(tarfile.TarError):  # FilterError where tarfile has filters
        extract_model_archive(str(archive), str(tmp_path / "out"))
    assert not (tmp_path / "escaped.txt").exists()
