"""Code that runs inside the SageMaker endpoint container (and is shared with training).

The modules here are copied flat into the artifact's ``code/`` directory, where the container puts
that directory on ``sys.path``; so they import each other with a relative import that falls back to
a top-level one (see ``inference.py``).
"""

# What training copies into the artifact's code/ directory: the handler and everything it imports.
ENDPOINT_CODE_FILES = ("inference.py", "preprocessing.py", "model_config.py", "architecture.py")
