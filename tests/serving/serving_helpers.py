"""Helpers shared by the serving tests (importable, unlike conftest.py)."""

from __future__ import annotations

import socket
from types import ModuleType

from inference.local_invoke import load_prediction_handler

ENDPOINT_NAME = "dog-breeds-test"


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load_handler(endpoint_url: str, **settings: str) -> ModuleType:
    """A freshly imported ``lambda/handler.py`` (settings and boto3 client from the environment, as
    in Lambda), one attempt per call unless ``settings`` say otherwise."""
    name = settings.pop("ENDPOINT_NAME", ENDPOINT_NAME)
    env = {"ENDPOINT_READ_TIMEOUT_SECONDS": "10", "ENDPOINT_MAX_ATTEMPTS": "1", **settings}
    return load_prediction_handler(endpoint_url, name, **env)
