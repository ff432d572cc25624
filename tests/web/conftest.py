"""Web page fixtures: the local site (localdev.serve) on a really trained model, headless Chromium."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving_helpers import train_tiny_artifact

from localdev.serve import LocalSite, local_stack
from scripts.browser import BrowserNotFound, ensure_chromium

REPO_ROOT = Path(__file__).resolve().parents[2]

# What Chromium needs on a closed network and as root in a container: no sandbox (root), no GPU, and no
# background connections (QUIC, component updates, sync), which otherwise fail slowly and log errors.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# DOGBREED_UPDATE_SCREENSHOTS=1 writes the screenshots of the README's page to docs/img/.
SCREENSHOTS = REPO_ROOT / "docs" / "img"


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_artifact(tmp_path_factory.mktemp("web-artifact"))


@pytest.fixture(scope="session")
def class_names(artifact_dir: Path) -> list[str]:
    return json.loads((artifact_dir / "model_config.json").read_text())["class_names"]


@pytest.fixture(scope="module")
def site(artifact_dir: Path) -> Iterator[LocalSite]:
    """``make serve``'s stack with the in-process model server: site, Lambda handler, local endpoint."""
    with local_stack(artifact_dir, server="inprocess") as running:
        yield running


@pytest.fixture(scope="session")
def chromium_path() -> str:
    try:
        path, _ = ensure_chromium(install=False)
    except BrowserNotFound as exc:
        pytest.fail(f"{exc} (`make test` finds or installs it first: `make browser`)")
    return path


@pytest.fixture(scope="session")
def browser(chromium_path: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    """A fresh browser context (no cache, no state from another test) with one page."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture
def screenshot_path(tmp_path: Path):
    def path(name: str) -> Path:
        return (SCREENSHOTS if os.environ.get("DOGBREED_UPDATE_SCREENSHOTS") == "1" else tmp_path) / name

    return path
