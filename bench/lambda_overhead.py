"""The prediction Lambda's own costs: cold import of ``handler.py`` and warm per-request overhead.

Cold: ``import handler`` timed inside a fresh interpreter (``lambda/`` as the working directory and
on sys.path, as the Lambda runtime loads it), repeated in N new processes; min/median/max. The
min is the number to hold against the target (page cache warm, .pyc files present, as in a Lambda
image); ``python -X importtime`` of one more process names the modules that cost the most, and
the split "import botocore" / "create the client" / the handler's own modules shows where the time
goes, and the same split with boto3 (what most Lambda functions import) is the comparison.

Warm: ``handler.handler(event, None)`` in a loop with the endpoint call replaced, so what remains
is the function's own work (event parsing, base64, validation, response shaping, the log line):
``stub`` swaps the module's client for an object that returns a canned response; ``botocore
Stubber`` keeps the real client and short-circuits only the HTTP send, so botocore's parameter
validation and request serialization are included (its SigV4 signing and the HTTP call are not).
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from localdev.local_invoke import function_url_event, load_prediction_handler

from .images import photo_jpeg
from .serving_overhead import LAMBDA_DIR, _Quiet
from .timing import Stats, interleaved

COLD_TARGET_MS = 150.0
WARM_TARGET_MS = 2.0
UNUSED_ENDPOINT_URL = "http://127.0.0.1:9"
WARMUP = 3  # untimed calls of each variant before the timed ones
B64DECODE = "base64.b64decode of the body alone"
ENVIRONMENT = {
    "ENDPOINT_NAME": "bench-endpoint",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",  # a placeholder: nothing is sent anywhere
    "AWS_EC2_METADATA_DISABLED": "true",
}
# What handler.py does at import, in steps: botocore, its one client, its own modules.
_COLD_SCRIPT = """
import time, json
t0 = time.perf_counter()
import botocore.session
t1 = time.perf_counter()
botocore.session.get_session().create_client("sagemaker-runtime")
t2 = time.perf_counter()
import api_errors, endpoint_errors, prediction_request
t3 = time.perf_counter()
print(json.dumps({"import_botocore": t1 - t0, "client": t2 - t1, "handler_rest": t3 - t2}))
"""
_WITH_BOTO3 = """
import time, json
t0 = time.perf_counter()
import boto3
t1 = time.perf_counter()
boto3.client("sagemaker-runtime")
t2 = time.perf_counter()
print(json.dumps({"import_boto3": t1 - t0, "client": t2 - t1}))
"""
_HANDLER_ONLY = """
import time, json
t0 = time.perf_counter()
import handler
print(json.dumps({"import_handler": time.perf_counter() - t0}))
"""
CANNED_BODY = json.dumps(
    {
        "predictions": [
            {"breed": f"Breed {index:03d}", "index": index, "probability": round(0.5 / (index + 1), 6)}
            for index in range(5)
        ],
        "model": {"arch": "resnet50", "num_classes": 133, "image_size": 224, "version": "0123456789ab"},
    }
).encode()


def _environment() -> dict[str, str]:
    import os

    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(ENVIRONMENT)
    env["PYTHONPATH"] = str(LAMBDA_DIR)
    return env


def _run_python(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments, no shell
        [sys.executable, *args],
        cwd=LAMBDA_DIR,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def cold_import(runs: int) -> dict[str, Any]:
    """``import handler`` in ``runs`` fresh interpreters, plus a split and an ``-X importtime`` top list."""
    _run_python(["-c", "import handler"])  # writes .pyc files, as a deployed package would have
    handler_ms = [
        json.loads(_run_python(["-c", _HANDLER_ONLY]).stdout)["import_handler"] * 1000 for _ in range(runs)
    ]
    splits = [json.loads(_run_python(["-c", _COLD_SCRIPT]).stdout) for _ in range(max(3, runs // 2))]
    with_boto3 = [json.loads(_run_python(["-c", _WITH_BOTO3]).stdout) for _ in range(max(3, runs // 2))]
    interpreter_ms = []
    for _ in range(max(3, runs // 2)):
        result = _run_python(["-c", "import time; print(time.process_time())"])
        interpreter_ms.append(float(result.stdout) * 1000)
    importtime = _run_python(["-X", "importtime", "-c", "import handler"]).stderr
    return {
        "runs": runs,
        "import_handler_ms": Stats.of(handler_ms).as_dict(),
        "split_ms": {
            key: Stats.of([split[key] * 1000 for split in splits]).as_dict()
            for key in ("import_botocore", "client", "handler_rest")
        },
        "boto3_ms": {
            key: Stats.of([split[key] * 1000 for split in with_boto3]).as_dict()
            for key in ("import_boto3", "client")
        },
        "interpreter_startup_cpu_ms": Stats.of(interpreter_ms).as_dict(),
        "top_imports": top_imports(importtime, limit=8),
        "target_ms": COLD_TARGET_MS,
    }


def top_imports(importtime_stderr: str, limit: int = 8) -> list[dict[str, Any]]:
    """Import self-time summed per top-level package, largest first, from ``python -X importtime``.

    Lines read ``import time: <self us> | <cumulative us> | <2 spaces per nesting level><module>``.
    """
    packages: dict[str, int] = {}
    for line in importtime_stderr.splitlines():
        fields = line.split("|")
        if not line.startswith("import time:") or len(fields) != 3:
            continue
        self_us = fields[0].split(":", 1)[1].strip()
        if not self_us.isdigit():
            continue
        package = fields[2].strip().split(".")[0]
        packages[package] = packages.get(package, 0) + int(self_us)
    ranked = sorted(packages.items(), key=lambda item: item[1], reverse=True)[:limit]
    return [{"package": name, "self_ms": microseconds / 1000} for name, microseconds in ranked]


class _StubRuntime:
    """Answers ``invoke_endpoint`` like the service, instantly."""

    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "Body": io.BytesIO(CANNED_BODY),
            "ContentType": "application/json",
            "InvokedProductionVariant": "AllTraffic",
            "ResponseMetadata": {"HTTPStatusCode": 200, "RetryAttempts": 0},
        }


def warm_overhead(images: dict[str, bytes], iterations: dict[str, int]) -> dict[str, Any]:
    """Per-request ms of ``handler.handler`` with the endpoint call stubbed out, per image size."""
    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    # The endpoint URL is never called: the client is replaced by a stub below.
    module = load_prediction_handler(UNUSED_ENDPOINT_URL, ENVIRONMENT["ENDPOINT_NAME"])
    real_client = module.RUNTIME
    stub_client = _StubRuntime()
    stubber = Stubber(real_client)
    out: dict[str, Any] = {"target_ms": WARM_TARGET_MS, "images": {}}
    for name, image in images.items():
        event = function_url_event(image, "image/jpeg", top_k=5)

        def with_stub(event: dict[str, Any] = event) -> None:
            module.RUNTIME = stub_client
            with _redirect():
                response = module.handler(event, None)
            if response["statusCode"] != 200:
                raise RuntimeError(response["body"])

        def with_stubber(event: dict[str, Any] = event) -> None:
            module.RUNTIME = real_client
            with _redirect():
                response = module.handler(event, None)
            if response["statusCode"] != 200:
                raise RuntimeError(response["body"])

        calls: dict[str, Callable[[], object]] = {
            "stub client": with_stub,
            "botocore Stubber": with_stubber,
            # The handler's largest single cost, in the same loop so the two compare (report, Blockers).
            B64DECODE: lambda body=event["body"]: base64.b64decode(body, validate=True),
        }
        # One canned answer per call, queued and activated before the clock runs: Stubber.add_response
        # validates the answer against the service model, work that no real request does.
        for _ in range(WARMUP + iterations[name]):
            stubber.add_response(
                "invoke_endpoint",
                {
                    "Body": StreamingBody(io.BytesIO(CANNED_BODY), len(CANNED_BODY)),
                    "ContentType": "application/json",
                    "InvokedProductionVariant": "AllTraffic",
                },
            )
        with stubber:
            samples = interleaved(calls, repeats=iterations[name], warmup=WARMUP)
            stubber.assert_no_pending_responses()
        ms = {label: Stats.of(values).scaled(1000).as_dict() for label, values in samples.items()}
        out["images"][name] = {
            "bytes": len(image),
            "iterations": iterations[name],
            "b64decode_ms": ms.pop(B64DECODE),
            "ms": ms,
        }
    module.RUNTIME = real_client
    return out


def _redirect():
    import contextlib

    return contextlib.redirect_stdout(_Quiet())


def run(
    cold_runs: int = 10,
    warm_iterations: dict[str, int] | None = None,
    images: dict[str, bytes] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    images = images or {"small": photo_jpeg((640, 480), seed=1), "phone": photo_jpeg()}
    warm_iterations = warm_iterations or {"small": 300, "phone": 30}
    cold = cold_import(cold_runs)
    log(
        f"  cold import handler: min {cold['import_handler_ms']['min']:.0f} ms, "
        f"median {cold['import_handler_ms']['median']:.0f} ms"
    )
    warm = warm_overhead(images, warm_iterations)
    for name, entry in warm["images"].items():
        log(f"  warm {name}: {entry['ms']['stub client']['median']:.2f} ms (stub client)")
    return {"cold": cold, "warm": warm}
