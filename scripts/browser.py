"""The Chromium the browser tests drive: found on this machine, or installed from Debian's packages.

    python -m scripts.browser [--no-install]

Prints the browser's path and version and exits 0, or prints one line saying how to install one and
exits 1. The search order: ``$DOGBREED_CHROMIUM`` (a path; used as given, never second-guessed), then
``chromium``, ``chromium-browser`` and ``google-chrome`` on ``PATH``. Where none is found and this runs
as root on a machine with ``apt-get`` (CI), it installs Debian's ``chromium`` package (about 16 s),
retrying once after ``apt-get update`` when the package lists are stale or missing.

Why a system package and not ``playwright install``: the tests' driver is the pinned ``playwright``
package, but its browser builds come from Playwright's CDN, which CI cannot reach; Debian's registry it
can. Playwright drives that Chromium through ``executable_path`` (tests/web/conftest.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping

ENV_VAR = "DOGBREED_CHROMIUM"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
APT_INSTALL = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
HOW_TO_INSTALL = (
    "no Chromium found: install it (Debian/Ubuntu: sudo apt-get install chromium; or any Chrome or "
    f"Chromium) or set {ENV_VAR}=/path/to/chromium"
)


class BrowserNotFound(RuntimeError):
    """No usable Chromium; the message says how to get one."""


def find_chromium(env: Mapping[str, str] = os.environ) -> str | None:
    """The Chromium to drive: ``$DOGBREED_CHROMIUM``, else the first candidate on ``PATH``; None if none.

    An unusable ``$DOGBREED_CHROMIUM`` raises :class:`BrowserNotFound`: a path set on purpose and wrong
    must not be replaced silently by another browser.
    """
    configured = env.get(ENV_VAR)
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise BrowserNotFound(f"{ENV_VAR}={configured} is not an executable file")
        return configured
    for name in CANDIDATES:
        path = shutil.which(name, path=env.get("PATH"))
        if path is not None:
            return path
    return None


def chromium_version(path: str) -> str:
    """``Chromium 150.0.7871.100 ...`` from ``--version``; raises BrowserNotFound when it does not run.

    A stub counts as not found (Ubuntu's chromium-browser without snapd only prints how to get the snap).
    """
    try:
        result = subprocess.run(  # noqa: S603 - the browser's own path, no shell
            [path, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrowserNotFound(f"{path} does not run: {exc}") from None
    line = result.stdout.strip().splitlines()[-1:] or [""]
    if result.returncode != 0 or not any(word in line[0] for word in ("Chromium", "Chrome")):
        raise BrowserNotFound(f"{path} --version did not print a Chromium version (exit {result.returncode})")
    return line[0]


def can_install() -> bool:
    """Installing a package needs apt-get and root (CI runs as root; a developer decides for themself)."""
    return shutil.which("apt-get") is not None and os.geteuid() == 0


def install_chromium() -> bool:
    """``apt-get install chromium``, once more after ``apt-get update`` if the first try fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for update_first in (False, True):
        if update_first:
            subprocess.run(["apt-get", "update"], env=env, check=False)  # noqa: S607 - apt-get from PATH
        if subprocess.run(APT_INSTALL, env=env, check=False).returncode == 0:  # noqa: S603
            return True
    return False


def ensure_chromium(*, install: bool = True) -> tuple[str, str]:
    """The path and version of a Chromium that runs, installed first where that is possible (and
    ``install``); BrowserNotFound with what to do otherwise."""
    path = find_chromium()
    if path is None and install and can_install():
        print("browser: no Chromium found; installing Debian's chromium package", flush=True)
        if not install_chromium():
            raise BrowserNotFound("apt-get install chromium failed (output above); " + HOW_TO_INSTALL)
        path = find_chromium()
    if path is None:
        raise BrowserNotFound(HOW_TO_INSTALL)
    return path, chromium_version(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.browser", description=__doc__.split("\n")[0])
    parser.add_argument("--no-install", action="store_true", help="only look; never run apt-get")
    args = parser.parse_args(argv)
    try:
        path, version = ensure_chromium(install=not args.no_install)
        print(f"browser: {path} ({version})")
    except BrowserNotFound as exc:
        print(f"browser: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
