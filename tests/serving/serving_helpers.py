"""Helpers shared by the serving tests (importable, unlike conftest.py)."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from urllib.parse import urlencode

import boto3
from botocore.config import Config

from localdev.function_url import function_url_event
from localdev.local_invoke import load_prediction_handler

ENDPOINT_NAME = "dog-breeds-test"
REPO_ROOT = Path(__file__).resolve().parents[2]


def train_tiny_artifact(root: Path) -> Path:
    """A model trained for real by ``training.train`` (1 epoch, 64 px, resnet18) on synthetic data in
    ``root``; returns the training output directory (about 10 s on 2 cores). The serving and the web
    tests' session fixtures."""
    data, model_dir = root / "data", root / "model"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    commands = [
        [
            *_py("training.synthetic"),
            "--out",
            data,
            "--classes",
            "6",
            "--per-class",
            "12",
            "--size",
            "64",
            "--seed",
            "3",
        ],
        [
            *_py("training.train"),
            *("--data-dir", data, "--model-dir", model_dir, "--arch", "resnet18", "--weights", "none"),
            *(
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--image-size",
                "64",
                "--workers",
                "0",
                "--threads",
                "1",
            ),
        ],
    ]
    for command in commands:
        result = subprocess.run(  # noqa: S603 - a fixed argv of this interpreter, no shell
            [str(part) for part in command],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, (
            f"{command[2]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
    assert (model_dir / "model.pt").is_file() and (model_dir / "code" / "inference.py").is_file()
    return model_dir


def _py(module: str) -> list[str]:
    return [sys.executable, "-m", module]


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_every_slot_is_taken(endpoint, timeout: float = 20.0) -> None:
    """Block until requests in flight hold all of a ``max_concurrency`` endpoint's slots.

    A fixed sleep is a race on a loaded machine: the request meant to hold the slot may arrive
    after the one meant to be throttled.
    """
    deadline = time.monotonic() + timeout
    while endpoint.slots._value > 0:  # threading.BoundedSemaphore: slots still free
        assert time.monotonic() < deadline, "no request reached the endpoint in time"
        time.sleep(0.01)


def load_handler(endpoint_url: str, **settings: str) -> ModuleType:
    """A freshly imported ``lambda/handler.py`` (settings and boto3 client from the environment, as
    in Lambda), one attempt per call unless ``settings`` say otherwise."""
    name = settings.pop("ENDPOINT_NAME", ENDPOINT_NAME)
    env = {"ENDPOINT_READ_TIMEOUT_SECONDS": "10", "ENDPOINT_MAX_ATTEMPTS": "1", **settings}
    return load_prediction_handler(endpoint_url, name, **env)


LAMBDA_CONTEXT = SimpleNamespace(aws_request_id="req-1234")
# What must never reach a caller: tracebacks, AWS resource names, the service's or model's own text.
LEAKS = (
    "Traceback",
    "arn:",
    "000000000000",
    "Received client error",
    "Received server error",
    'File "',
    "primary",
)


def url_event(body: bytes, content_type: str, query: dict | None = None, method: str = "POST") -> dict:
    """The Lambda Function URL (payload 2.0) event for ``method /?query`` with ``body``: built by
    :func:`localdev.function_url.function_url_event`, the builder ``make serve`` and local_invoke use
    (an image type's body base64-encoded, a text or JSON one as it is; no ``queryStringParameters``
    without a query)."""
    target = f"/?{urlencode(query)}" if query else "/"
    headers = [("content-type", content_type), ("host", "abc.lambda-url.us-east-1.on.aws")]
    return function_url_event(method, target, headers, body, source_ip="203.0.113.7", request_id="gw-1")


def json_event(document: dict, query: dict | None = None) -> dict:
    """A ``content-type: application/json`` Function URL event whose body is ``document``."""
    return url_event(json.dumps(document).encode(), "application/json", query)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def call(api, event, context=LAMBDA_CONTEXT) -> tuple[int, dict, dict]:
    response = api.handler(event, context)
    assert set(response) == {"statusCode", "headers", "body"}
    body = json.loads(response["body"])
    request_id = context.aws_request_id if context else response["headers"]["x-request-id"]
    assert response["headers"]["x-request-id"] == body["request_id"] == request_id
    assert response["headers"]["content-type"] == "application/json"
    if response["statusCode"] != 200:
        assert set(body) == {"error", "request_id"}
        assert set(body["error"]) == {"code", "message"} and body["error"]["message"]
        assert not any(leak in response["body"] for leak in LEAKS), response["body"]
    return response["statusCode"], body, response["headers"]


def last_log(capsys) -> dict:
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def runtime_client(url: str):
    """A real boto3 sagemaker-runtime client aimed at the local endpoint the documented way."""
    env = {
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": url,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        return boto3.client(
            "sagemaker-runtime", config=Config(retries={"total_max_attempts": 1, "mode": "standard"})
        )
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
