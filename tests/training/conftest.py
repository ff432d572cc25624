"""Shared fixtures: one synthetic dataset and one 2-process DDP run, reused by many assertions."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_helpers import CLASSES, Run, run_training

from training import synthetic


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    return synthetic.generate(
        tmp_path_factory.mktemp("synthetic"), classes=CLASSES, per_class=40, size=48, seed=1
    )


@pytest.fixture(scope="session")
def ddp_run(tmp_path_factory, dataset) -> Run:
    """An uninterrupted 2-process run (gloo), the reference for the resume test too."""
    return run_training(tmp_path_factory.mktemp("ddp") / "model", dataset)
