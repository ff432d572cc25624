"""Serving test fixtures: a really trained artifact, local endpoints, freshly imported Lambda handlers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LAMBDA_DIR = REPO_ROOT / "lambda"
# The repo root for `inference` and `training`; lambda/ because the Lambda bundles it flat and
# handler.py imports its siblings as top-level modules.
for path in (REPO_ROOT, LAMBDA_DIR):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from serving_helpers import ENDPOINT_NAME  # noqa: E402

from inference.local_endpoint import LocalEndpoint  # noqa: E402


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained for real by ``training.train`` (1 epoch, 64 px, resnet18) on synthetic data."""
    root = tmp_path_factory.mktemp("serving-artifact")
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
