"""Classify an image through the prediction API (lambda/handler.py) and a local endpoint, offline.

    python -m localdev.local_invoke --model-dir DIR --image dog.jpg [--top-k 5]

starts :class:`~localdev.local_endpoint.LocalEndpoint` on a free loopback port, imports the
Lambda handler exactly as Lambda does (``ENDPOINT_NAME`` and the other settings from the
environment, its botocore client pointed at the endpoint through ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``),
sends the image as a Function URL event and prints the predictions and the time of each stage.

From Python (the demo): ``load_prediction_handler(endpoint.url, endpoint.name)`` and
``function_url_event(image_bytes, content_type, top_k)``.
Dev tooling (``localdev``): neither in the endpoint artifact nor in the training job's source bundle.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from . import function_url
from .local_endpoint import LocalEndpoint, client_environment

LAMBDA_DIR = Path(__file__).resolve().parents[1] / "lambda"
_loaded = itertools.count()
_IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


def load_prediction_handler(endpoint_url: str, endpoint_name: str, **settings: str) -> ModuleType:
    """A fresh import of ``lambda/handler.py`` whose client calls ``endpoint_url`` for ``endpoint_name``.

    ``settings`` are extra environment variables for the import (``ENDPOINT_READ_TIMEOUT_SECONDS``,
    ``ENDPOINT_MAX_ATTEMPTS``, ``MAX_IMAGE_BYTES``, ...). The process environment is restored
    afterwards; the module keeps the settings and the client it built, as a warm Lambda does.
    """
    env = {**client_environment(endpoint_url), "ENDPOINT_NAME": endpoint_name, **settings}
    if str(LAMBDA_DIR) not in sys.path:
        sys.path.insert(0, str(LAMBDA_DIR))  # Lambda puts the bundle root on sys.path
    name = f"prediction_handler_{next(_loaded)}"
    spec = importlib.util.spec_from_file_location(name, LAMBDA_DIR / "handler.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {LAMBDA_DIR / 'handler.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module while the class is created
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
    return module


def function_url_event(image: bytes, content_type: str, top_k: int | None = None) -> dict[str, Any]:
    """The event a Lambda Function URL delivers for ``POST /?top_k=N`` with ``image`` as the body.

    :func:`localdev.function_url.function_url_event` builds it, the builder ``make serve`` uses: an image
    type's body base64-encoded, no ``queryStringParameters`` without ``top_k``. ``top_k=0`` is sent as
    given (the API answers 400), not silently dropped for the default 5.
    """
    target = "/" if top_k is None else f"/?top_k={top_k}"
    return function_url.function_url_event(
        "POST",
        target,
        [("content-type", content_type)],
        image,
        source_ip="127.0.0.1",
        request_id=str(uuid.uuid4()),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localdev.local_invoke", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--model-dir", required=True, help="the training output directory or its model.tar.gz"
    )
    parser.add_argument("--image", required=True, type=Path, help="a JPEG, PNG or WebP file")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--name", default="dog-breeds-local", help="the local endpoint's name")
    args = parser.parse_args(argv)
    content_type = _IMAGE_TYPES.get(args.image.suffix.lower(), "image/jpeg")

    began = time.perf_counter()
    with LocalEndpoint(args.model_dir, name=args.name) as endpoint:
        started = time.perf_counter()
        handler = load_prediction_handler(endpoint.url, endpoint.name)
        imported = time.perf_counter()
        event = function_url_event(args.image.read_bytes(), content_type, args.top_k)
        response = handler.handler(event, None)
        answered = time.perf_counter()
    body = json.loads(response["body"])
    print(f"status {response['statusCode']}, request id {response['headers']['x-request-id']}")
    for rank, entry in enumerate(body.get("predictions", []), 1):
        print(f"  {rank}. {entry['breed']:<40} {entry['probability']:7.2%}  (class {entry['index']})")
    if "error" in body:
        print(f"  error {body['error']['code']}: {body['error']['message']}")
    print(
        f"endpoint start (model load + warm-up) {1000 * (started - began):.0f} ms, "
        f"handler import {1000 * (imported - started):.0f} ms, "
        f"prediction through the handler {1000 * (answered - imported):.0f} ms"
    )
    return 0 if response["statusCode"] == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
