"""Which commit a model was trained from: ``metrics.json``'s ``git_commit``, the model package's metadata.

Standard library only: ``training.train`` (in the training job, from the source bundle) and
``training.launch`` (on the launching machine) both call :func:`git_commit`.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

# Set by training.launch on the SageMaker job (estimator environment): the job runs from a source bundle,
# not a git checkout, so only the launching machine knows the commit. Set it by hand to override.
GIT_COMMIT_ENV = "DOGBREED_GIT_COMMIT"
SOURCE_ROOT = Path(__file__).resolve().parents[1]
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 object names


def git_commit(source_root: Path = SOURCE_ROOT) -> str | None:
    """``$DOGBREED_GIT_COMMIT``, else ``git rev-parse HEAD`` of the source tree, else None.

    None where the tree is not the root of a checkout (a SageMaker job's /opt/ml/code, a ``git archive``
    copy), git is not installed or refuses (an unsafe-ownership repository): provenance is never worth
    failing a run over. HEAD does not show uncommitted changes.
    """
    given = os.environ.get(GIT_COMMIT_ENV, "").strip()
    if given:
        return given
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],  # noqa: S607 - git from PATH, as a developer runs it
            cwd=source_root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = proc.stdout.split("\n")
    if proc.returncode != 0 or len(lines) < 2:
        return None
    # The checkout must be this tree itself: a copy unpacked inside some other repository is not its commit.
    top, head = Path(lines[0]).resolve(), lines[1].strip()
    return head if top == Path(source_root).resolve() and _SHA.fullmatch(head) else None
