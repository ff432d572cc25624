"""Serving test fixtures: a really trained artifact, local endpoints, freshly imported Lambda handlers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving_helpers import ENDPOINT_NAME, train_tiny_artifact

from localdev.local_endpoint import LocalEndpoint

REPO_ROOT = Path(__file__).resolve().parents[2]
LAMBDA_DIR = REPO_ROOT / "lambda"


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained for real by ``training.train`` (1 epoch, 64 px, resnet18) on synthetic data."""
    return train_tiny_artifact(tmp_path_factory.mktemp("serving-artifact"))


@pytest.fixture(scope="module")
def endpoint(artifact_dir: Path) -> Iterator[LocalEndpoint]:
    """One healthy local endpoint per test module."""
    with LocalEndpoint(artifact_dir, name=ENDPOINT_NAME) as running:
        yield running


@pytest.fixture(scope="session")
def class_names(artifact_dir: Path) -> list[str]:
    return json.loads((artifact_dir / "model_config.json").read_text())["class_names"]


@pytest.fixture(scope="session")
def torchserve_endpoint(artifact_dir: Path) -> Iterator[LocalEndpoint]:
    """The artifact served by the DLC's real stack (toolkit + TorchServe 0.12, Java), dev's environment.

    One per test session: four workers take 20-40 s to load on two cores.
    """
    with LocalEndpoint(artifact_dir, name=ENDPOINT_NAME, server="torchserve", stage="dev") as running:
        yield running
