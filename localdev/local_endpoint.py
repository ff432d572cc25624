"""A local SageMaker endpoint: the model's handler functions behind the runtime's HTTP API, on loopback.

    python -m localdev.local_endpoint --model-dir DIR|model.tar.gz [--server torchserve|inprocess]
        [--stage dev] [--port 8080] [--name NAME] [--inference-component NAME]

The model runs in one of two servers:

* ``torchserve``: the DLC's real serving stack (:mod:`localdev.torchserve_container`: the SageMaker
  PyTorch toolkit starting TorchServe 0.12 with the stage's Model environment from
  ``stacks.model_environment``, the very dict the CDK stack deploys);
* ``inprocess``: the handler functions called in this process by :mod:`localdev.toolkit_emulation`
  (fast; the parity tests tie it to the real stack).

Either way the endpoint has two faces, both served by one ``ThreadingHTTPServer`` on 127.0.0.1:

* the container contract the PyTorch DLC implements: ``GET /ping``, ``POST /invocations``; handler
  errors come back as the toolkit sends them (status, ``message + "\\n" + traceback``);
* the SageMaker runtime API that boto3 calls, ``POST /endpoints/{name}/invocations``, with errors in
  the service's rest-json shape (``x-amzn-ErrorType`` header, JSON body), so that a
  ``boto3.client("sagemaker-runtime")`` pointed here with ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``
  raises the same exception classes as against AWS: ``ModelError`` (424, with
  ``OriginalStatusCode``/``OriginalMessage``/``LogStreamArn``) when the model answers 4xx/5xx,
  ``ValidationError`` for an unknown endpoint name, ``ThrottlingException`` beyond
  ``--max-concurrency`` requests in flight, ``ModelError`` with ``OriginalStatusCode`` 0 when the
  model takes longer than the invocation limit (60 s, as on SageMaker). Other methods get a 405.

With ``--inference-component NAME`` the endpoint hosts the model as that one inference component, as
a stage that scales to zero does: requests must name it (``InferenceComponentName``, header
``X-Amzn-SageMaker-Inference-Component``), and while it has zero copies
(:meth:`LocalEndpoint.scale_to_zero`) they get SageMaker's no-capacity ``ValidationError``.

For tests and the demo, :class:`LocalEndpoint` starts and stops the same server in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import signal
import socket
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import unquote

from inference import inference as default_handlers
from stacks import model_environment as stage_model
from stacks.config import ConfigError

from .java_runtime import JavaNotFound
from .toolkit_emulation import ContainerResponse, ToolkitEmulation
from .torchserve_container import LOOPBACK, ContainerStartError, ServingStackMissing, TorchServeContainer

SERVERS = ("torchserve", "inprocess")

logger = logging.getLogger("localdev.local_endpoint")

# InvokeEndpoint's BodyBlob limit (botocore sagemaker-runtime service model: max 6291456).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# Placeholders where the real service puts account-specific values; clearly not a real account.
FAKE_ACCOUNT = "000000000000"
FAKE_REGION = "us-east-1"
DEFAULT_VARIANT = "AllTraffic"
# How long SageMaker waits for the container to answer /invocations before giving up with a
# ModelError whose OriginalStatusCode is 0.
INVOCATION_TIMEOUT_SECONDS = 60.0
_TIMED_OUT = (
    "Your invocation timed out while waiting for a response from container primary. Review the latency "
    "metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
)
_INVOKE_PATH = re.compile(r"^/endpoints/([^/]+)/invocations$")
# The header InvokeEndpoint's InferenceComponentName travels in (botocore's sagemaker-runtime model).
INFERENCE_COMPONENT_HEADER = "X-Amzn-SageMaker-Inference-Component"
# SageMaker's answer (400 ValidationError) to a request for an inference component with zero copies
# (AWS ML blog, "Unlock cost savings with the new scale down to zero feature in SageMaker Inference",
# https://aws.amazon.com/blogs/machine-learning/unlock-cost-savings-with-the-new-scale-down-to-zero-feature-in-amazon-sagemaker-inference/).
NO_CAPACITY_MESSAGE = (
    "Inference Component has no capacity to process this request. ApplicationAutoScaling may be "
    "in-progress (if configured) or try to increase the capacity by invoking "
    "UpdateInferenceComponentRuntimeConfig API."
)
# SageMaker's answer to a request that names no component on an endpoint that hosts them, as users
# reported it (github.com/aws-samples/amazon-kendra-langchain-extensions/issues/64).
COMPONENT_REQUIRED_MESSAGE = (
    "Inference Component Name header is required for endpoints to which you plan to deploy inference "
    "components. Please include Inference Component Name header or consider using SageMaker models."
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    # Headers and body go out as separate small writes; with Nagle's algorithm on, the second waits
    # for the client's delayed ACK (40 ms on Linux) on every kept-alive request.
    disable_nagle_algorithm = True
    server_version = "LocalSageMakerEndpoint"
    timeout = 60  # an idle keep-alive connection releases its thread after this many seconds
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        if self.path == "/ping":
            self._send(self.server.endpoint.ping(), b"", "text/plain")
        else:
            self._service_error(404, "UnknownOperationException", "Unknown operation")

    def _declared_length(self) -> int | None:
        """The Content-Length as an integer, or None when it is not one."""
        declared = (self.headers.get("Content-Length") or "0").strip()
        # "²" is a digit to isdigit(), not to int()
        return int(declared) if declared.isascii() and declared.isdigit() else None

    def _method_not_allowed(self) -> None:
        # Read and drop any body, so the kept-alive connection stays in step.
        length = self._declared_length()
        if length is not None and length <= MAX_PAYLOAD_BYTES:
            self.rfile.read(length)
        else:
            self.close_connection = True
        allowed = "GET" if self.path == "/ping" else "POST"
        body = json.dumps({"message": f"method {self.command} is not allowed here; use {allowed}"}).encode()
        headers = {"Allow": allowed, "x-amzn-ErrorType": "MethodNotAllowedException:"}
        self._send(405, body, "application/json", headers)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed

    def do_HEAD(self) -> None:
        self.close_connection = True
        self.send_response(405)
        self.send_header("Allow", "GET, POST")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        length = self._declared_length()
        if length is None:
            self.close_connection = True  # the body's end is unknown: the connection cannot be reused
            self._service_error(400, "ValidationError", "Content-Length must be a non-negative integer")
            return
        if length > MAX_PAYLOAD_BYTES:
            self.close_connection = True
            self._service_error(400, "ValidationError", "Request payload exceeds the 6 MB limit")
            return
        body = self.rfile.read(length)
        if self.path == "/invocations":
            response = self._run_model(body)
            if response is not None:
                self._send(response.status, response.body, response.content_type)
            return
        match = _INVOKE_PATH.match(self.path.split("?", 1)[0])
        if match is None:
            self._service_error(404, "UnknownOperationException", "Unknown operation")
            return
        name = unquote(match.group(1))
        if name != self.server.endpoint.name:
            # What the real service answers for an endpoint that does not exist in the account.
            message = f"Endpoint {name} of account {FAKE_ACCOUNT} not found."
            self._service_error(400, "ValidationError", message)
            return
        refusal = self.server.endpoint.component_refusal(self.headers.get(INFERENCE_COMPONENT_HEADER))
        if refusal is not None:
            self._service_error(400, "ValidationError", refusal)
            return
        response = self._run_model(body, self.server.endpoint.invocation_timeout_seconds)
        if response is None:
            return
        if response.status >= 300 or response.status == 0:
            self._model_error(name, response)
            return
        headers = {"x-Amzn-Invoked-Production-Variant": DEFAULT_VARIANT}
        self._send(200, response.body, response.content_type, headers)

    def _run_model(self, body: bytes, time_limit: float | None = None) -> ContainerResponse | None:
        """Run the handlers under the endpoint's concurrency limit; None when throttled (already answered).

        With ``time_limit`` (the runtime API), a model held longer than that by ``delay_seconds`` gets
        the answer SageMaker gives when the container does not answer in time: status 0.
        """
        endpoint = self.server.endpoint
        if not endpoint.slots.acquire(blocking=False):
            self._service_error(400, "ThrottlingException", "Rate exceeded")
            return None
        try:
            if time_limit is not None and endpoint.delay_seconds >= time_limit:
                time.sleep(time_limit)
                return ContainerResponse(0, _TIMED_OUT.encode(), "text/plain")
            if endpoint.delay_seconds:
                time.sleep(endpoint.delay_seconds)
            limit = time_limit if time_limit is not None else INVOCATION_TIMEOUT_SECONDS
            remaining = max(limit - endpoint.delay_seconds, 0.001)
            return endpoint.toolkit.invoke(body, dict(self.headers.items()), timeout=remaining)
        finally:
            endpoint.slots.release()

    def _model_error(self, name: str, response: ContainerResponse) -> None:
        original = response.body.decode("utf-8", errors="replace")
        kind = "client" if 400 <= response.status < 500 else "server"
        log_group = f"/aws/sagemaker/Endpoints/{name}"
        message = (
            f'Received {kind} error ({response.status}) from primary with message "{original[:1024]}". '
            f"See https://{FAKE_REGION}.console.aws.amazon.com/cloudwatch/home?region={FAKE_REGION}"
            f"#logEventViewer:group={log_group} in account {FAKE_ACCOUNT} for more information."
        )
        self._service_error(
            424,
            "ModelError",
            message,
            OriginalStatusCode=response.status,
            OriginalMessage=original,
            LogStreamArn=f"arn:aws:logs:{FAKE_REGION}:{FAKE_ACCOUNT}:log-group:{log_group}",
        )

    def _service_error(self, status: int, error_type: str, message: str, **fields: Any) -> None:
        body = json.dumps({"message": message, **fields}).encode()
        self._send(status, body, "application/json", {"x-amzn-ErrorType": f"{error_type}:"})

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    # Request threads are joined on close: a thread still inside torch when the interpreter exits
    # aborts the process ("terminate called without an active exception").
    daemon_threads = False
    block_on_close = True
    endpoint: LocalEndpoint

    def __init__(self, address: tuple[str, int], endpoint: LocalEndpoint) -> None:
        super().__init__(address, _Handler)
        self.endpoint = endpoint
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_idle_connections(self) -> None:
        """End keep-alive connections: their threads wake from reading with EOF and return."""
        with self.connections_lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RD)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (read timeout) closes its socket before the answer is written:
        # routine for an endpoint, not worth a traceback on stderr.
        if isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            logger.debug("client %s disconnected before the response", client_address)
        else:
            logger.exception("error while serving %s", client_address)


class LocalEndpoint:
    """The local endpoint, started and stopped in-process.

    >>> with LocalEndpoint("model_dir", name="dog-breeds") as endpoint:
    ...     os.environ.update(endpoint.client_environment())
    ...     boto3.client("sagemaker-runtime").invoke_endpoint(EndpointName="dog-breeds", ...)

    ``max_concurrency`` (None: unlimited) answers ``ThrottlingException`` beyond that many requests
    in flight; ``delay_seconds`` holds every request that long first (a slow endpoint), and one held
    ``invocation_timeout_seconds`` or longer gets SageMaker's timeout, a ``ModelError`` with status 0;
    ``handlers`` swaps the module whose ``model_fn/input_fn/predict_fn/output_fn`` are served (in-process).

    ``inference_component`` (None: a production variant) hosts the model as that one inference
    component, with ``copies`` 1: :meth:`scale_to_zero` and :meth:`scale_out` change them, and while
    there are none each request for it gets SageMaker's no-capacity ``ValidationError`` and counts in
    ``no_capacity_failures`` (CloudWatch's ``NoCapacityInvocationFailures``, whose alarm is what scales
    a real component out; here the test does).

    ``server="torchserve"`` serves the model with the DLC's TorchServe and toolkit instead, with the
    ``stage``'s SageMaker Model environment (``environment`` replaces it, for tests that need another).
    """

    def __init__(
        self,
        model_dir: str,
        *,
        name: str = "local",
        port: int = 0,
        max_concurrency: int | None = None,
        delay_seconds: float = 0.0,
        invocation_timeout_seconds: float = INVOCATION_TIMEOUT_SECONDS,
        handlers: ModuleType | SimpleNamespace = default_handlers,
        server: str = "inprocess",
        stage: str = "dev",
        environment: Mapping[str, str] | None = None,
        inference_component: str | None = None,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if server not in SERVERS:
            raise ValueError(f"server must be one of {', '.join(SERVERS)}, not {server!r}")
        self.server = server
        self.stage = stage
        self._environment = environment
        self.model_source = str(model_dir)
        self.model_dir = self.model_source
        self._extracted: tempfile.TemporaryDirectory[str] | None = None
        self.name = name
        self.delay_seconds = delay_seconds
        self.invocation_timeout_seconds = invocation_timeout_seconds
        self.slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else _Unlimited()
        self.inference_component = inference_component
        # The component's copy count (None: no component); requests read it from the server's threads.
        self.copies: int | None = 1 if inference_component is not None else None
        self.no_capacity_failures = 0
        self._capacity_lock = threading.Lock()
        self._requested_port = port
        self._handlers = handlers
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.toolkit: ToolkitEmulation | TorchServeContainer

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the endpoint is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> LocalEndpoint:
        """Load the model (model_fn, warm-up included), then listen; returns once requests are served."""
        if self.model_source.endswith((".tar.gz", ".tgz")):
            self._extracted = tempfile.TemporaryDirectory(prefix="local-endpoint-model-")
            self.model_dir = extract_model_archive(self.model_source, self._extracted.name)
        # Bind first: a port in use fails before a model server is started; connections queue in the
        # backlog until the model is loaded and the serving thread runs.
        self._server = _Server((LOOPBACK, self._requested_port), self)
        try:
            if self.server == "torchserve":
                self.toolkit = TorchServeContainer(self.model_dir, self.model_environment()).start()
            else:
                self.toolkit = ToolkitEmulation(self.model_dir, self._handlers)
        except BaseException:
            # TorchServe runs in its own process group: a failed start must not leave it running.
            self._server.server_close()
            self._server = None
            self.stop()
            raise
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"endpoint-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, let requests in flight finish, close every connection."""
        if self._server is not None:
            self._server.shutdown()
            self._server.close_idle_connections()
            self._server.server_close()  # joins the request threads
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if getattr(self, "toolkit", None) is not None:
            self.toolkit.stop()
        if self._extracted is not None:
            self._extracted.cleanup()
            self._extracted = None

    def scale_to_zero(self) -> None:
        """The component's copies go to 0, as an idle scale-to-zero stage's do."""
        self.scale_out(0)

    def scale_out(self, copies: int = 1) -> None:
        """The component gets ``copies`` copies (what the no-capacity alarm's scaling policy does)."""
        if self.inference_component is None:
            raise RuntimeError("this endpoint hosts no inference component: it cannot scale its copies")
        if copies < 0:
            raise ValueError("copies must be 0 or more")
        with self._capacity_lock:
            self.copies = copies

    def component_refusal(self, requested: str | None) -> str | None:
        """The ValidationError message for a request naming inference component ``requested`` (None: the
        request names none), or None when the request may run."""
        if self.inference_component is None and requested is None:
            return None
        if requested is None:
            return COMPONENT_REQUIRED_MESSAGE
        if requested != self.inference_component:
            # A component this endpoint does not host (or an endpoint that hosts none): SageMaker answers
            # a ValidationError, but its text is not documented; this one is the emulation's own.
            return f"Inference Component {requested} is not deployed on endpoint {self.name}."
        with self._capacity_lock:
            if self.copies:
                return None
            self.no_capacity_failures += 1
        return NO_CAPACITY_MESSAGE

    def model_environment(self) -> dict[str, str]:
        """The container environment TorchServe runs with: the stage's SageMaker Model ``Environment``."""
        if self._environment is not None:
            return dict(self._environment)
        return stage_model.model_environment(stage_model.stage_config_from_cdk_json(self.stage))

    def ping(self) -> int:
        """What the model server's ``/ping`` answers."""
        return self.toolkit.ping()

    def client_environment(self) -> dict[str, str]:
        """Environment for a boto3 ``sagemaker-runtime`` client to reach this endpoint."""
        return client_environment(self.url)

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def extract_model_archive(archive: str, destination: str) -> str:
    """Unpack a ``model.tar.gz`` as SageMaker does into /opt/ml/model; returns ``destination``.

    tarfile's "data" filter refuses absolute paths, ``..``, links leaving the directory and device
    files: an artifact is data and must not write outside the directory it is unpacked into.
    """
    with tarfile.open(archive, "r:gz") as bundle:
        if hasattr(tarfile, "data_filter"):
            bundle.extractall(destination, filter="data")
            return destination
        # Python < 3.11.4 has no extraction filters: the same checks by hand, before extracting.
        root = Path(destination).resolve()
        for member in bundle.getmembers():
            inside = (root / member.name).resolve().is_relative_to(root)
            if not inside or not (member.isfile() or member.isdir()):
                raise tarfile.TarError(f"refusing archive member {member.name!r}: not a plain file inside")
        bundle.extractall(destination)  # noqa: S202 - every member was checked above
    return destination


def client_environment(url: str) -> dict[str, str]:
    """``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` plus dummy credentials and region, for an offline boto3."""
    return {
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": url,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",  # a placeholder: the local endpoint checks no signature
        "AWS_DEFAULT_REGION": FAKE_REGION,
    }


class _Unlimited:
    def acquire(self, blocking: bool = True) -> bool:
        return True

    def release(self) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localdev.local_endpoint", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--model-dir", required=True, help="the training output: model.pt + model_config.json"
    )
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default="torchserve",
        help="torchserve: the DLC's TorchServe + toolkit (needs requirements-serving.txt and Java 17+); "
        "inprocess: the handler functions in this process",
    )
    parser.add_argument(
        "--stage", default="dev", help="the cdk.json stage whose SageMaker Model environment TorchServe gets"
    )
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument(
        "--name", default="local", help="endpoint name accepted on /endpoints/{name}/invocations"
    )
    parser.add_argument(
        "--inference-component",
        default=None,
        metavar="NAME",
        help="host the model as this inference component: requests must name it (InferenceComponentName)",
    )
    parser.add_argument(
        "--max-concurrency", type=int, default=None, help="throttle beyond N requests in flight"
    )
    parser.add_argument(
        "--delay-seconds", type=float, default=0.0, help="hold each request this long (slow model)"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")

    stopped = threading.Event()
    started = False

    def on_sigterm(*_: object) -> None:
        # During the start, unwind it (LocalEndpoint.start stops what it began); afterwards, stop serving.
        if not started:
            raise SystemExit(0)
        stopped.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        endpoint = LocalEndpoint(
            args.model_dir,
            name=args.name,
            port=args.port,
            max_concurrency=args.max_concurrency,
            delay_seconds=args.delay_seconds,
            server=args.server,
            stage=args.stage,
            inference_component=args.inference_component,
        ).start()
    except (JavaNotFound, ServingStackMissing, ContainerStartError, ConfigError, OSError) as exc:
        print(f"local_endpoint: cannot start: {exc}", file=sys.stderr)
        return 2
    started = True
    print(f"endpoint {endpoint.name!r} ({endpoint.server}) serving on {endpoint.url}", flush=True)
    if endpoint.inference_component is not None:
        print(f"  inference component {endpoint.inference_component!r}", flush=True)
    print(f"  AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME={endpoint.url}", flush=True)
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        endpoint.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
