"""The PyTorch inference DLC's serving stack, run on this machine: the toolkit starting TorchServe.

:class:`TorchServeContainer` does what the container's entrypoint does (``serve`` ->
``sagemaker_pytorch_serving_container.serving.main``): the toolkit writes TorchServe's properties from
the Model's environment and starts TorchServe 0.12 with the toolkit's ``HandlerService``, whose workers
import ``code/inference.py`` from the model directory. The same packages as the image
(requirements-serving.txt), no Docker. Only what assumes the process owns a machine is moved:

* the properties file the toolkit writes to ``/etc/sagemaker-ts.properties`` goes into a private work
  directory, and ``/opt/ml/model`` is ``SAGEMAKER_BASE_DIR/model`` there (a link to the unpacked artifact);
* the toolkit finds "the" TorchServe process by class name and refuses to run beside another one; here it
  finds the one started with this work directory's properties file;
* TorchServe binds loopback instead of 0.0.0.0 (``TS_*_ADDRESS``, which TorchServe reads over the file),
  on free ports, with its pid file and temporary files in the work directory.

Everything else (the properties the toolkit writes, its newline bug included; worker count; timeouts;
error bodies; logs) is the real stack's own behaviour. Repo-only tooling: not part of the artifact.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .java_runtime import java_environment
from .toolkit_emulation import ContainerResponse

LOOPBACK = "127.0.0.1"
MODEL_NAME = "model"  # the toolkit registers the single model under this name
# The request headers SageMaker passes on to the container's /invocations.
FORWARDED_HEADERS = ("content-type", "accept", "x-amzn-sagemaker-custom-attributes")
DEFAULT_STARTUP_TIMEOUT_SECONDS = 180.0
WORKER_ERROR_GRACE_SECONDS = 10.0

# Runs in a fresh interpreter (-I: no PYTHONPATH, no cwd on sys.path, so the repo's `inference` package can
# never shadow the artifact's code/inference.py). argv: the properties file to write.
_ENTRYPOINT = """
import sys
import psutil
from retrying import retry
from sagemaker_pytorch_serving_container import serving, torchserve

properties = sys.argv[1]
torchserve.TS_CONFIG_FILE = properties

@retry(stop_max_delay=10 * 1000)
def _this_server():
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and torchserve.TS_NAMESPACE in process.cmdline() \\
                    and properties in process.cmdline():
                return process
        except psutil.Error:
            continue
    raise Exception("Torchserve model server was unsuccessfully started")

torchserve._retrieve_ts_server_process = _this_server
serving.main()
"""


class ContainerStartError(RuntimeError):
    """TorchServe did not come up with every worker ready; the message carries the reason from its log."""


class ServingStackMissing(RuntimeError):
    """sagemaker-pytorch-inference / TorchServe are not installed here: nothing was learnt about the model."""


class TorchServeContainer:
    """The DLC's toolkit + TorchServe serving one unpacked artifact on loopback.

    ``environment`` is the SageMaker Model's ``Environment`` (``stacks.model_environment``).
    :meth:`invoke` has the signature of ``ToolkitEmulation.invoke``, so the local endpoint's runtime front
    serves either.
    """

    def __init__(
        self,
        model_dir: str | Path,
        environment: Mapping[str, str],
        *,
        startup_timeout_seconds: float = DEFAULT_STARTUP_TIMEOUT_SECONDS,
    ) -> None:
        self.model_dir = Path(model_dir).resolve()
        self.environment = dict(environment)
        self.startup_timeout_seconds = startup_timeout_seconds
        self.port = 0
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> TorchServeContainer:
        """Start the toolkit's entrypoint and return once every worker has loaded the model."""
        if importlib.util.find_spec("sagemaker_pytorch_serving_container") is None:
            raise ServingStackMissing(
                "the inference container's serving stack is not installed: "
                "pip install -r requirements-serving.txt (make setup does)"
            )
        if not (self.model_dir / "code" / "inference.py").is_file():
            raise ContainerStartError(f"{self.model_dir} has no code/inference.py: not an unpacked artifact")
        self._workdir = Path(tempfile.mkdtemp(prefix="torchserve-"))
        base = self._workdir / "opt-ml"
        base.mkdir()
        (base / "model").symlink_to(self.model_dir, target_is_directory=True)
        (self._workdir / "tmp").mkdir()
        ports = _free_ports(4)
        self.port = ports[0]
        properties = self._workdir / "sagemaker-ts.properties"
        self._log = (self._workdir / "container.log").open("wb")
        try:
            self._process = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed script
                [sys.executable, "-I", "-c", _ENTRYPOINT, str(properties)],
                cwd=self._workdir,
                env=self._process_environment(base, ports),
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # one process group: the launcher, TorchServe's JVM, its workers
            )
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM as SageMaker sends it (the toolkit forwards it to TorchServe), then the whole group."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # TorchServe's JVM and workers, if any remain
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            self.last_log = self.log_text()
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> TorchServeContainer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- the container's HTTP API ---------------------------------------------------------------------

    def invoke(self, body: bytes, headers: Mapping[str, str], timeout: float = 60.0) -> ContainerResponse:
        """``POST /invocations`` with the headers SageMaker forwards; status 0: no answer in ``timeout``."""
        forwarded = {name: value for name, value in headers.items() if name.lower() in FORWARDED_HEADERS}
        try:
            status, payload, response_headers = self._request(
                "POST", "/invocations", body, forwarded, timeout
            )
        except TimeoutError:
            return ContainerResponse(0, b"the container did not answer in time", "text/plain")
        except (OSError, http.client.HTTPException) as exc:
            # TorchServe itself is gone or dropped the connection: no answer from the container at all,
            # which SageMaker also reports as a ModelError without a status from the container.
            message = f"the container closed the connection: {type(exc).__name__}"
            return ContainerResponse(0, message.encode(), "text/plain")
        content_type = response_headers.get("content-type", "application/octet-stream")
        return ContainerResponse(status, payload, content_type)

    def ping(self) -> int:
        """TorchServe's ``GET /ping`` status (what SageMaker's health check sees); 503 if unreachable."""
        try:
            return self._request("GET", "/ping", b"", {}, 10.0)[0]
        except (OSError, http.client.HTTPException):
            return 503

    def describe_model(self) -> dict[str, Any]:
        """TorchServe's management API ``GET /models/model``: its effective settings and workers."""
        status, payload, _ = self._request("GET", f"/models/{MODEL_NAME}", b"", {}, 10.0)
        if status != 200:
            raise RuntimeError(f"GET /models/{MODEL_NAME}: {status} {payload[:200]!r}")
        [description] = json.loads(payload)
        return description

    def log_text(self) -> str:
        """What the container wrote to stdout/stderr (CloudWatch's view of it on SageMaker)."""
        if self._workdir is None:
            return getattr(self, "last_log", "")
        if self._log is not None:
            self._log.flush()
        return (self._workdir / "container.log").read_text(errors="replace")

    # --- internals -----------------------------------------------------------------------------------

    def _process_environment(self, base: Path, ports: list[int]) -> dict[str, str]:
        inherited = {
            name: value
            for name, value in os.environ.items()
            # A clean container: nothing of this shell's PYTHONPATH, SageMaker or TorchServe settings.
            if name != "PYTHONPATH" and not name.startswith(("SAGEMAKER_", "TS_"))
        }
        address = f"http://{LOOPBACK}:{ports[0]}"
        tmp = str(self._workdir / "tmp")  # type: ignore[operator]
        return {
            **inherited,
            # `torchserve` (the CLI the toolkit runs) lives next to this interpreter.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{inherited.get('PATH', '')}",
            **java_environment(),
            **self.environment,
            "SAGEMAKER_BASE_DIR": str(base),
            "SAGEMAKER_BIND_TO_PORT": str(ports[0]),
            "TS_INFERENCE_ADDRESS": address,
            "TS_MANAGEMENT_ADDRESS": address,
            "TS_METRICS_ADDRESS": f"http://{LOOPBACK}:{ports[1]}",
            "TS_GRPC_INFERENCE_PORT": str(ports[2]),
            "TS_GRPC_MANAGEMENT_PORT": str(ports[3]),
            # The management API shares the inference port; on a machine with other users, registering a
            # model from a URL would run their code as this user. (The DLC's toolkit means to enable it,
            # but its properties-file bug already turns it off: TorchServe logs "Model API enabled: false".)
            "TS_ENABLE_MODEL_API": "false",
            # TorchServe's pid file (tempfile.gettempdir()) and the JVM's java.io.tmpdir (TEMP).
            "TMPDIR": tmp,
            "TEMP": tmp,
        }

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_seconds
        retrying_since: float | None = None
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise ContainerStartError(
                    f"the container exited with status {self._process.returncode}:\n{self._log_tail()}"
                )
            log = self.log_text()
            if "Retry worker" in log:
                retrying_since = retrying_since or time.monotonic()
                # The frontend logs the retry from its own thread; the worker's last words (its stderr,
                # relayed line by line) may still be on their way, so give them a moment.
                settled = time.monotonic() - retrying_since > WORKER_ERROR_GRACE_SECONDS
                failure = _worker_error(log, settled=settled)
                if failure or settled:
                    reason = failure or "the worker died while loading (see the container log)"
                    raise ContainerStartError(f"the model failed to load in a TorchServe worker: {reason}")
            with contextlib.suppress(OSError, RuntimeError, ValueError, http.client.HTTPException):
                description = self.describe_model()
                workers = description.get("workers", [])
                enough = workers and len(workers) >= description.get("minWorkers", 1)
                if enough and all(worker.get("status") == "READY" for worker in workers):
                    return
            if time.monotonic() > deadline:
                waited = f"{self.startup_timeout_seconds:.0f} s"
                raise ContainerStartError(f"TorchServe was not ready after {waited}:\n{self._log_tail()}")
            time.sleep(0.25)

    def _log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _request(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes, dict[str, str]]:
        connection = http.client.HTTPConnection(LOOPBACK, self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body or None, headers=dict(headers))
            response = connection.getresponse()
            payload = response.read()
            return response.status, payload, {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()


def _worker_error(log: str, *, settled: bool = False) -> str | None:
    """The last error line a worker wrote, once TorchServe has started retrying it: the model's own error;
    TorchServe's status line only once ``settled`` (the worker's last words had time to arrive).

    TorchServe restarts a worker whose ``initialize`` raised, with back-off, for ``maxRetryTimeoutInSec``
    (300 s) while ``/ping`` keeps answering 200; the log line "Retry worker" is the first sign.
    """
    relayed = [line.split("MODEL_LOG - ", 1)[1] for line in log.splitlines() if "MODEL_LOG - " in line]
    # A traceback arrives frame by frame, its source lines indented ("    raise RuntimeError(...)"): only a
    # line of its own names an error.
    errors = [line for line in relayed if not line[:1].isspace() and ("Error" in line or "Exception" in line)]
    # After logging the load failure, the worker re-raises its own status as ``RuntimeError("500 - Unknown
    # exception")`` (ts/model_service_worker.py, handle_connection): that line says nothing about the model,
    # and on a busy machine it is already in the log when the cause is read. Until the cause arrives there
    # is none to give (the caller waits WORKER_ERROR_GRACE_SECONDS for it).
    causes = [line for line in errors if not _TORCHSERVE_STATUS.match(line)]
    if causes:
        return causes[-1]
    return errors[-1] if settled and errors else None


_TORCHSERVE_STATUS = re.compile(r"^RuntimeError: \d{3} - ")


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind((LOOPBACK, 0))
            sockets.append(probe)
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()
