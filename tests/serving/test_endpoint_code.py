"""inference/ is exactly what ships: every module of it is in the artifact's code/, and nothing else is.

The container puts code/ on sys.path and imports inference.py top-level, so a module of inference/ may
import only its siblings, the standard library and what the PyTorch inference DLC has installed; a
module that needs anything else (stacks, botocore, the local endpoint) belongs in localdev/.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import inference

INFERENCE_DIR = Path(inference.__file__).resolve().parent
MODULES = sorted(path for path in INFERENCE_DIR.glob("*.py") if path.name != "__init__.py")
SIBLINGS = {path.stem for path in MODULES}
# What the inference DLC's image provides besides the standard library: its Dockerfile pip-installs
# torch, torchvision, Pillow and numpy, and the serving toolkit (sagemaker-pytorch-inference, which
# brings sagemaker_inference: the handler raises its error type there); see docs/serving.md.
CONTAINER_PACKAGES = {"torch", "torchvision", "PIL", "numpy", "sagemaker_inference"}


def imported_top_levels(path: Path) -> set[str]:
    """The top-level names a module imports, relative imports as the sibling they name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from .x import y / from . import x
                names.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
            elif node.module != "__future__":
                names.add(node.module.split(".")[0])
    return names


def test_the_artifact_code_dir_holds_every_module_of_inference(artifact_dir):
    shipped = {path.name for path in (artifact_dir / "code").iterdir() if path.suffix == ".py"}
    assert shipped == {path.name for path in MODULES}
    assert set(inference.ENDPOINT_CODE_FILES) == shipped


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_an_inference_module_imports_only_what_the_container_has(module):
    foreign = imported_top_levels(module) - SIBLINGS - CONTAINER_PACKAGES - set(sys.stdlib_module_names)
    assert not foreign, f"{module.name} imports {sorted(foreign)}: not in the container; move it to localdev/"


def test_the_import_check_catches_a_repo_import(tmp_path):
    """The check above would fail for a module reaching into the repo (what localdev/ does)."""
    module = tmp_path / "leaky.py"
    module.write_text("from stacks.config import ConfigError\nfrom . import model_config\nimport json\n")
    assert imported_top_levels(module) == {"stacks", "model_config", "json"}
