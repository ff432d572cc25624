"""The web page on a local endpoint: ``make serve``, or

    python -m localdev.serve [--model-dir DIR|model.tar.gz] [--server torchserve|inprocess]
        [--port 8000] [--host 127.0.0.1]

In production CloudFront serves ``web/`` from a private S3 bucket, with the security headers below (its
response headers policy), and forwards ``/api/predict`` to the prediction Lambda's Function URL through
an origin access control. Here one ``ThreadingHTTPServer`` plays both parts: it serves ``web/`` with
the same headers and hands ``/api/predict`` to ``lambda/handler.py``'s ``handler`` the way the OAC and
the Function URL would (:mod:`localdev.function_url`: the payload-hash check, the event, the response),
while the handler calls a local SageMaker endpoint (:mod:`localdev.local_endpoint`) serving the model
with the DLC's TorchServe (``--server torchserve``, the default) or in this process (``inprocess``).

Without ``--model-dir`` it serves ``build/demo/model.tar.gz`` (what ``make demo`` trains), training that
model first when there is none (2-3 minutes on 2 cores). Ctrl-C stops both servers.

The headers are ``stacks.security_headers.SECURITY_HEADERS``, the one definition CloudFront's response
headers policy is built from too (its Content-Security-Policy included), so the browser tests run the
page under the policy production enforces. This module imports only that and the standard library at
the top (the model stack when it is started), so that it starts fast and the CDK app could import it.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from stacks.security_headers import SECURITY_HEADERS

from . import function_url

REPO = Path(__file__).resolve().parent.parent
WEB_DIR = REPO / "web"
DEMO_WORK_DIR = REPO / "build" / "demo"
API_PATH = "/api/predict"
ENDPOINT_NAME = "dogbreed-local"
FUNCTION_NAME = "dogbreed-local-api"

# The request handler's socket timeout: a read (request line, headers, body) that waits longer gives up.
READ_TIMEOUT_SECONDS = 30
# What web/ may serve, by suffix; any other file there (or elsewhere) is a 404. Production deploys only
# stacks/front_door.py's WEB_FILES; tests/web/test_local_site.py checks that web/ holds nothing that one
# serves and the other does not.
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

Function = Callable[[dict[str, Any], Any], Any]
logger = logging.getLogger("localdev.serve")


@dataclass(frozen=True)
class LambdaContext:
    """The part of Lambda's context object the prediction handler reads."""

    aws_request_id: str
    function_name: str = FUNCTION_NAME


class SiteRequestHandler(BaseHTTPRequestHandler):
    server: LocalSite
    server_version = "LocalSite"
    # Seconds a read of the connection may wait (StreamRequestHandler sets it on the socket): a client that
    # declares a body and sends less, or sends nothing, must not hold a request thread forever.
    timeout = READ_TIMEOUT_SECONDS

    def do_GET(self) -> None:
        if urlsplit(self.path).path == API_PATH:
            self._invoke_function(b"")
        else:
            self._static(send_body=True)

    def do_HEAD(self) -> None:
        self._static(send_body=False)

    def do_POST(self) -> None:
        if urlsplit(self.path).path != API_PATH:
            self._send(function_url.HttpResponse(405, {"allow": "GET, HEAD"}, b""))
            return
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            self.close_connection = True  # browsers send a Content-Length with a Blob body
            self._send(_plain(411, "Length Required"))
            return
        declared = self.headers.get("content-length", "0").strip()
        if not (declared.isascii() and declared.isdigit()):
            # Not a length ("-1", "ten", "\u00b2"): the body's end is unknown, so is the next request's start.
            self.close_connection = True
            self._send(_plain(400, "Bad Request: Content-Length is not a number of bytes"))
            return
        length = int(declared)
        if length > function_url.MAX_INVOCATION_PAYLOAD_BYTES:
            # Nothing is read of a body that cannot fit the invocation payload.
            self.close_connection = True
            self._send(function_url.payload_too_large())
            return
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            self._send(_plain(408, "Request Timeout: the body did not arrive in time"))
            return
        if len(body) < length:  # the client closed its side before the end of the body
            self.close_connection = True
            self._send(_plain(400, "Bad Request: the body is shorter than its Content-Length"))
            return
        self._invoke_function(body)

    do_PUT = do_PATCH = do_DELETE = do_POST

    def _invoke_function(self, body: bytes) -> None:
        """What the OAC and the Function URL do: check the payload hash, build the event, run the function."""
        headers = list(self.headers.items())
        refusal = function_url.payload_hash_refusal(self.command, {k.lower(): v for k, v in headers}, body)
        if refusal is not None:
            self._send(refusal)  # Lambda refuses the signature: the function never runs
            return
        request_id = str(uuid.uuid4())
        event = function_url.function_url_event(
            self.command, self.path, headers, body, source_ip=self.client_address[0], request_id=request_id
        )
        if len(json.dumps(event)) > function_url.MAX_INVOCATION_PAYLOAD_BYTES:
            self._send(function_url.payload_too_large())
            return
        try:
            response = function_url.http_response(self.server.function(event, LambdaContext(request_id)))
        except Exception:
            # The handler answers every failure itself; this is a bug in it. API Gateway's wording.
            logger.exception("the function raised")
            body = json.dumps({"message": "Internal Server Error"}).encode()
            response = function_url.HttpResponse(502, {"content-type": "application/json"}, body)
        response.headers["x-amzn-requestid"] = request_id
        self._send(response)

    def _static(self, *, send_body: bool) -> None:
        data = self._static_file()
        if data is None:
            self._send(_plain(404, "Not Found"), send_body=send_body)
            return
        content_type, body = data
        # no-cache: a reload after an edit of web/ shows the edit.
        headers = {"content-type": content_type, "cache-control": "no-cache"}
        self._send(function_url.HttpResponse(200, headers, body), send_body=send_body)

    def _static_file(self) -> tuple[str, bytes] | None:
        """The content type and bytes of the web/ file the request names; None for anything else."""
        path = unquote(urlsplit(self.path).path)
        relative = "index.html" if path == "/" else path.lstrip("/")
        parts = relative.split("/")
        if any(part.startswith(".") or not part for part in parts):
            return None
        try:
            file = self.server.web_dir.joinpath(*parts).resolve()
            content_type = STATIC_TYPES.get(file.suffix)
            if content_type is None or not file.is_relative_to(self.server.web_dir) or not file.is_file():
                return None
            return content_type, file.read_bytes()
        except (ValueError, OSError):
            # "/%00" (ValueError: embedded null byte), a name too long for the file system, a file that
            # went away or cannot be read: nothing to serve.
            return None

    def _send(self, response: function_url.HttpResponse, *, send_body: bool = True) -> None:
        self.send_response(response.status)
        # On every answer, over the origin's own, as the distribution's response headers policy does.
        for name, value in {**response.headers, **SECURITY_HEADERS}.items():
            self.send_header(name, value)
        for cookie in response.cookies:
            self.send_header("set-cookie", cookie)
        self.send_header("content-length", str(len(response.body)))
        self.end_headers()
        if send_body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)


class LocalSite(ThreadingHTTPServer):
    """The site on ``address``: ``web/`` and ``POST /api/predict`` into ``function(event, context)``.

    The port is bound at construction; requests wait in the backlog until :meth:`start`.
    """

    # A browser's idle keep-alive connection must not hold up Ctrl-C; a request thread only waits on the
    # endpoint's HTTP answer, and the endpoint joins its own (model) threads when it stops.
    daemon_threads = True

    def __init__(self, address: tuple[str, int], function: Function | None = None, web_dir: Path = WEB_DIR):
        super().__init__(address, SiteRequestHandler)
        self.function: Function = function or _no_function
        self.web_dir = web_dir.resolve()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - a display name only
        return f"http://{shown}:{port}/"

    def start(self) -> LocalSite:
        # Polled every 0.1 s for stop(), rather than serve_forever's default 0.5 s.
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="local-site", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server_close()


def _plain(status: int, text: str) -> function_url.HttpResponse:
    return function_url.HttpResponse(status, {"content-type": "text/plain"}, f"{text}\n".encode())


def _no_function(event: dict[str, Any], context: Any) -> Any:
    raise RuntimeError("the site has no function to invoke")


@contextmanager
def local_stack(
    model: Path, *, server: str = "torchserve", host: str = "127.0.0.1", port: int = 0, stage: str = "dev"
) -> Iterator[LocalSite]:
    """The site, the prediction handler and a local endpoint serving ``model``, all started; stopped after."""
    from localdev.local_endpoint import LocalEndpoint
    from localdev.local_invoke import load_prediction_handler

    site = LocalSite((host, port))  # bound first: a port in use fails before the model is loaded
    try:
        with LocalEndpoint(str(model), name=ENDPOINT_NAME, server=server, stage=stage) as endpoint:
            site.function = load_prediction_handler(endpoint.url, endpoint.name).handler
            site.start()
            try:
                yield site
            finally:
                site.stop()  # before the endpoint, so that no request is left without it
    finally:
        site.server_close()


def demo_model(work: Path = DEMO_WORK_DIR) -> Path:
    """``make demo``'s model.tar.gz, trained the demo's way first when it is not there."""
    tarball = work / "model.tar.gz"
    if tarball.is_file():
        return tarball
    from scripts import demo

    print(f"no --model-dir and no {tarball}: training the demo's model (2-3 minutes on 2 cores)")
    return demo.train_and_package(work, {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localdev.serve", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model-dir", type=Path, help=f"a training output or model.tar.gz (default: {DEMO_WORK_DIR})"
    )
    parser.add_argument(
        "--server",
        choices=("torchserve", "inprocess"),
        default="torchserve",
        help="torchserve: the DLC's TorchServe + toolkit (Java 17+); inprocess: the handlers in this process",
    )
    parser.add_argument("--port", type=int, default=8000, help="the site's port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument(
        "--stage", default="dev", help="the cdk.json stage whose Model environment TorchServe gets"
    )
    args = parser.parse_args(argv)
    # The site's access log; botocore's and TorchServe's chatter only when something is wrong.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logger.setLevel(logging.INFO)
    if args.model_dir is not None and not args.model_dir.exists():
        print(f"serve: --model-dir {args.model_dir} does not exist", file=sys.stderr)
        return 2
    from localdev.java_runtime import JavaNotFound
    from localdev.torchserve_container import ContainerStartError, ServingStackMissing
    from stacks.config import ConfigError

    # SIGTERM (a supervisor, `kill`) unwinds like Ctrl-C: both servers stop, TorchServe included.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        model = args.model_dir or demo_model()
        started = time.perf_counter()
        print(f"starting the {args.server} endpoint on {model} ...", flush=True)
        with local_stack(model, server=args.server, host=args.host, port=args.port, stage=args.stage) as site:
            print(f"endpoint and handler ready in {time.perf_counter() - started:.1f} s", flush=True)
            if args.host not in ("127.0.0.1", "localhost"):
                # crypto.subtle, which hashes the upload, exists only on https:// and localhost pages.
                print("note: over plain HTTP only http://127.0.0.1 or localhost pages can hash uploads")
            print(f"\n  open {site.url}   (Ctrl-C stops)\n", flush=True)
            threading.Event().wait()
    except KeyboardInterrupt:
        print("\nstopped", flush=True)
    except subprocess.CalledProcessError as exc:
        print(f"serve: training the demo's model failed (output above): {exc}", file=sys.stderr)
        return 2
    except (JavaNotFound, ServingStackMissing, ContainerStartError, ConfigError, OSError) as exc:
        print(f"serve: cannot start: {exc}", file=sys.stderr)
        if args.server == "torchserve" and not isinstance(exc, OSError):
            print("serve: --server inprocess serves the same handlers without TorchServe", file=sys.stderr)
        return 2
    return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
