"""What `make serve` and `make browser` rely on: a light localdev.serve, and finding Chromium."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from localdev import serve
from scripts import browser
from stacks import security_headers

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_scripts_serve_imports_without_the_model_stack():
    """At the top localdev.serve imports only the standard library and stacks.security_headers (the CSP's
    one definition, which the CDK app imports too); the model stack loads when it is started. So a wrong
    argument or ``--help`` answers at once, without torch, botocore or inference."""
    heavy = ("torch", "botocore", "inference")
    code = f"import sys, localdev.serve\nprint([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_site_sends_the_distributions_headers_and_the_page_needs_nothing_more():
    """One definition for CloudFront and the local site; what web/ needs of it, and no more."""
    assert serve.SECURITY_HEADERS is security_headers.SECURITY_HEADERS
    policy = security_headers.SECURITY_HEADERS["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == directives["style-src"] == directives["connect-src"] == "'self'"
    assert directives["img-src"] == "'self' blob: data:"  # the preview is a blob: URL
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_serve_refuses_a_model_dir_that_does_not_exist(tmp_path, capsys):
    assert serve.main(["--model-dir", str(tmp_path / "nothing"), "--server", "inprocess"]) == 2
    assert "does not exist" in capsys.readouterr().err


def fake_browser(directory: Path, name: str, version: str = "Chromium 150.0.7871.100") -> Path:
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{version}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_chromium_is_looked_up_in_order_on_path(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    fake_browser(second, "google-chrome")
    assert browser.find_chromium({"PATH": f"{first}:{second}"}) == str(second / "google-chrome")
    fake_browser(first, "chromium-browser")
    assert browser.find_chromium({"PATH": f"{first}:{second}"}) == str(first / "chromium-browser")
    assert browser.find_chromium({"PATH": str(tmp_path / "empty")}) is None


def test_the_environment_variable_wins_and_a_wrong_one_is_an_error(tmp_path):
    chosen = fake_browser(tmp_path, "my-chromium")
    fake_browser(tmp_path, "chromium")
    assert browser.find_chromium({"DOGBREED_CHROMIUM": str(chosen), "PATH": str(tmp_path)}) == str(chosen)
    with pytest.raises(browser.BrowserNotFound, match="DOGBREED_CHROMIUM=/no/such/chromium"):
        browser.find_chromium({"DOGBREED_CHROMIUM": "/no/such/chromium", "PATH": str(tmp_path)})


def test_a_stub_that_prints_no_chromium_version_does_not_count(tmp_path):
    stub = fake_browser(
        tmp_path, "chromium-browser", version="Command '/usr/bin/chromium-browser' requires the snap"
    )
    with pytest.raises(browser.BrowserNotFound, match="did not print a Chromium version"):
        browser.chromium_version(str(stub))
    assert browser.chromium_version(str(fake_browser(tmp_path, "chromium"))).startswith("Chromium 150")


def test_without_a_browser_or_a_way_to_install_one_the_answer_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(browser, "find_chromium", lambda env=os.environ: None)
    monkeypatch.setattr(browser, "can_install", lambda: False)
    assert browser.main([]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install chromium" in err and "DOGBREED_CHROMIUM" in err


def test_as_root_with_apt_get_it_installs_chromium_then_uses_it(monkeypatch, tmp_path):
    installed = fake_browser(tmp_path, "chromium")
    found = iter([None, str(installed)])
    monkeypatch.setattr(browser, "find_chromium", lambda env=os.environ: next(found))
    monkeypatch.setattr(browser, "can_install", lambda: True)
    commands = []

    def apt_get(command, **kwargs):
        assert kwargs["env"]["DEBIAN_FRONTEND"] == "noninteractive"  # no prompt in CI
        commands.append(command)
        # The first install fails (stale package lists), the one after `apt-get update` succeeds.
        return subprocess.CompletedProcess(command, 100 if len(commands) == 1 else 0)

    monkeypatch.setattr(browser.subprocess, "run", apt_get)
    monkeypatch.setattr(browser, "chromium_version", lambda path: "Chromium 150")
    assert browser.ensure_chromium() == (str(installed), "Chromium 150")
    assert commands == [browser.APT_INSTALL, ["apt-get", "update"], browser.APT_INSTALL]
    assert browser.APT_INSTALL == ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
