"""Helpers shared by the serving tests (importable, unlike conftest.py)."""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "lambda"
ENDPOINT_NAME = "dog-breeds-test"
_handler_modules = itertools.count()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def load_handler(endpoint_url: str, **settings: str) -> ModuleType:
    """A freshly imported ``lambda/handler.py``, configured from the environment as in Lambda.

    Each call executes the module again (module-level settings and boto3 client included) under its
    own name, so tests with different timeouts or endpoints do not share a client.
    """
    env = {
        "ENDPOINT_NAME": ENDPOINT_NAME,
        "ENDPOINT_READ_TIMEOUT_SECONDS": "10",
        "ENDPOINT_MAX_ATTEMPTS": "1",
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        **settings,
    }
    name = f"prediction_handler_{next(_handler_modules)}"
    spec = importlib.util.spec_from_file_location(name, LAMBDA_DIR / "handler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is created
    try:
        with environment(**env):
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
