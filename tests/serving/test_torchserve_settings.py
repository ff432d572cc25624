"""What the real TorchServe runs with and does, read back from it: timeouts, workers, logs, a slow model.

The stack intends: TorchServe gives up after ``model_server_timeout_seconds`` (at least 2 s before the
Lambda's read timeout), with ``inference_workers`` workers. These tests read the effective values back
from TorchServe's management API, and watch the server cut a slow request before the caller's read
timeout.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import pytest
import sample_images as images
from serving_helpers import ENDPOINT_NAME, call, load_handler, url_event

from localdev.local_endpoint import LocalEndpoint
from stacks.model_environment import model_environment, stage_config_from_cdk_json

# Appended to a copy of the artifact's code/inference.py: a model that fails or stalls on request.
INSTRUMENTED = """

import time as _time

_real_predict_fn = predict_fn


def predict_fn(request, model, context=None):
    if "fail=1" in (_custom_attributes(context) or ""):
        raise RuntimeError("instrumented failure")
    if request.top_k == 3:  # the Lambda sends only top_k: a request for 3 classes stalls
        _time.sleep(30)
    return _real_predict_fn(request, model, context)
"""


def test_timeout_and_workers_are_what_the_stack_intends(torchserve_endpoint):
    intended = stage_config_from_cdk_json("dev")
    description = torchserve_endpoint.toolkit.describe_model()
    assert description["responseTimeout"] == intended.model_server_timeout_seconds
    assert description["responseTimeout"] < intended.endpoint_read_timeout_seconds
    assert description["minWorkers"] == description["maxWorkers"] == intended.inference_workers
    assert [worker["status"] for worker in description["workers"]] == ["READY"] * intended.inference_workers


def test_the_toolkit_alone_would_not_set_the_timeout(torchserve_endpoint):
    """Why the stack sets TS_DEFAULT_RESPONSE_TIMEOUT: the toolkit's own line is glued to the one before."""
    properties = (torchserve_endpoint.toolkit._workdir / "sagemaker-ts.properties").read_text()
    timeout = stage_config_from_cdk_json("dev").model_server_timeout_seconds
    assert f"enable_model_api=truedefault_response_timeout={timeout}\n" in properties
    assert "\ndefault_response_timeout=" not in properties


def test_ping_is_torchserves(torchserve_endpoint):
    assert torchserve_endpoint.ping() == torchserve_endpoint.toolkit.ping() == 200


@pytest.fixture(scope="module")
def instrumented(artifact_dir, tmp_path_factory):
    """A one-worker TorchServe on an instrumented copy of the artifact; the stage's environment with a
    2 s server timeout under a 4 s read timeout."""
    model = tmp_path_factory.mktemp("instrumented") / "model"
    shutil.copytree(artifact_dir, model)
    code = model / "code" / "inference.py"
    code.write_text(code.read_text() + INSTRUMENTED)
    config = dataclasses.replace(
        stage_config_from_cdk_json("dev"),
        endpoint_read_timeout_seconds=4,
        model_server_timeout_seconds=2,
        inference_workers=1,
    )
    with LocalEndpoint(
        str(model), name=ENDPOINT_NAME, server="torchserve", environment=model_environment(config)
    ) as running:
        yield running, config


def _log_lines_since(container, start: int) -> list[str]:
    return container.log_text().splitlines()[start:]


def _request_log(container, start: int, timeout: float = 20.0) -> list[str]:
    """The worker's log lines of the request just answered, once all of them reached the container log.

    The worker prints its ``PredictionTime`` metric with the request id after the handler returned, so
    once that line is in, every line the handler and the toolkit wrote for the request is in too.
    """
    deadline = time.monotonic() + timeout
    while True:
        lines = _log_lines_since(container, start)
        if any("PredictionTime" in line and "requestID:" in line for line in lines):
            return [line for line in lines if "MODEL_LOG" in line]
        assert time.monotonic() < deadline, "the request's log lines did not arrive"
        time.sleep(0.05)


def test_a_rejected_request_logs_one_line_without_a_traceback(instrumented):
    endpoint, _ = instrumented
    container = endpoint.toolkit
    start = len(container.log_text().splitlines())
    response = container.invoke(images.gif(), {"Content-Type": "image/gif"})
    assert response.status == 415
    lines = _request_log(container, start)
    rejected = [line for line in lines if "rejected request" in line]
    assert len(rejected) == 1, lines
    assert "415 unsupported_media_type: content type 'image/gif' is not supported" in rejected[0]
    request_id = rejected[0].split("rejected request ", 1)[1].split(":", 1)[0]
    assert len(request_id) == 36  # TorchServe's request id, also in its metrics lines
    assert not any("Traceback" in line or "Transform failed" in line for line in lines), lines


def test_a_server_error_keeps_its_traceback(instrumented):
    endpoint, _ = instrumented
    container = endpoint.toolkit
    start = len(container.log_text().splitlines())
    response = container.invoke(
        images.jpeg(), {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "fail=1"}
    )
    assert response.status == 500
    assert response.body.decode().startswith("instrumented failure\nTraceback")
    failed = [line for line in _request_log(container, start) if "Transform failed" in line]
    assert len(failed) == 1 and "RuntimeError: instrumented failure" in failed[0]


def test_a_slow_request_is_cut_by_the_server_before_the_callers_read_timeout(instrumented, capsys):
    endpoint, config = instrumented
    api = load_handler(
        endpoint.url,
        ENDPOINT_READ_TIMEOUT_SECONDS=str(config.endpoint_read_timeout_seconds),
        ENDPOINT_MAX_ATTEMPTS="3",
    )
    started = time.monotonic()
    status, body, _ = call(api, url_event(images.jpeg(), "image/jpeg", {"top_k": "3"}))
    elapsed = time.monotonic() - started
    log = json.loads([line for line in capsys.readouterr().out.splitlines() if line.startswith("{")][-1])
    # TorchServe answers its own timeout with 500 "Worker died." (and restarts the worker): the model
    # failed, said by the server, once; not a read timeout that botocore retries into the busy worker.
    assert status == 502 and body["error"]["code"] == "model_error"
    assert log["model_status"] == 500 and log["attempts"] == 1
    assert config.model_server_timeout_seconds <= elapsed < config.endpoint_read_timeout_seconds


def test_a_model_that_does_not_load_is_refused_before_traffic(artifact_dir, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(artifact_dir, broken)
    (broken / "model.pt").write_bytes(b"not a state_dict")
    from localdev.torchserve_container import ContainerStartError, TorchServeContainer

    config = dataclasses.replace(stage_config_from_cdk_json("dev"), inference_workers=1)
    with pytest.raises(ContainerStartError, match=r"model\.pt does not load as this model's state_dict"):
        TorchServeContainer(Path(broken), model_environment(config)).start()


def test_a_load_failure_is_told_by_its_cause_not_by_torchserves_status_line():
    """On a busy machine the worker's re-raised status ("500 - Unknown exception") is already in the log
    when the container reads it; the reason given must still be the model's own error."""
    from localdev.torchserve_container import _worker_error

    prefix = "2026-12-02T00:25:31,097 [INFO ] W-9000-model_1.0-stdout MODEL_LOG - "
    log = "\n".join(
        prefix + line
        for line in (
            "Traceback (most recent call last):",
            "RuntimeError: model.pt does not load as this model's state_dict (resnet18, 6 classes)",
            "Traceback (most recent call last):",
            "RuntimeError: 500 - Unknown exception",
        )
    )
    assert _worker_error(log).startswith("RuntimeError: model.pt does not load")
    # The status line alone: the cause may still be on its way, so no reason yet; once the grace period
    # is over, the status line is all there is.
    status_only = "\n".join(
        prefix + line
        for line in (
            "Traceback (most recent call last):",
            '    raise RuntimeError("{} - {}".format(code, result))',
            "RuntimeError: 500 - Unknown exception",
        )
    )
    assert _worker_error(status_only) is None
    assert _worker_error(status_only, settled=True) == "RuntimeError: 500 - Unknown exception"
