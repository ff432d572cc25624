"""Exactly the code that runs inside the SageMaker endpoint container (and is shared with training).

Every module here is copied flat into the artifact's ``code/`` directory, where the container puts
that directory on ``sys.path``; so they import each other with a relative import that falls back to
a top-level one (see ``inference.py``). What only runs on a developer's machine (the local endpoint,
the serve check, the toolkit emulation) lives in ``localdev/``; tests/serving/test_endpoint_code.py
holds this package to that: each module imports only its siblings and what the inference DLC has.
"""

from pathlib import Path

# What training copies into the artifact's code/ directory: every module of this package (the
# package marker aside: the container imports the modules top-level, not as a package).
ENDPOINT_CODE_FILES = tuple(
    sorted(path.name for path in Path(__file__).resolve().parent.glob("*.py") if path.name != "__init__.py")
)
