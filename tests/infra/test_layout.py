"""Where CDK code lives (docs/infrastructure.md, Layout): stack modules compose, constructs sit in
stacks/constructs/ and take narrow props, never the stage's whole configuration."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

STACK_MODULES = sorted((REPO_ROOT / "stacks").glob("*.py"))
CONSTRUCT_MODULES = sorted((REPO_ROOT / "stacks" / "constructs").glob("*.py"))


def _base_names(node: ast.ClassDef) -> set[str]:
    return {base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "") for base in node.bases}


def construct_classes(path: Path) -> list[str]:
    """Classes of ``path`` that subclass ``Construct`` directly (a stack subclasses ``Stack``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and "Construct" in _base_names(node)
    ]


def names_used(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    return names


@pytest.mark.parametrize("module", STACK_MODULES, ids=lambda path: path.name)
def test_a_stack_module_defines_no_construct_of_its_own(module):
    assert construct_classes(module) == [], f"move {construct_classes(module)} to stacks/constructs/"


@pytest.mark.parametrize("module", CONSTRUCT_MODULES, ids=lambda path: path.name)
def test_a_construct_takes_narrow_props_not_the_stage_config(module):
    assert "StageConfig" not in names_used(module), f"{module.name}: pass the values it uses as props"


def test_the_layout_checks_see_what_they_look_for(tmp_path):
    """The two checks above would fail for an inline construct and for a construct taking the config."""
    module = tmp_path / "inline.py"
    module.write_text(
        "from constructs import Construct\nfrom stacks.config import StageConfig\n"
        "class Helper(Construct):\n    def __init__(self, scope, config: StageConfig): ...\n"
    )
    assert construct_classes(module) == ["Helper"]
    assert "StageConfig" in names_used(module)
