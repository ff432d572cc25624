"""Synthesize each stage once per session (jsii is slow) and hand templates to the tests.

Every synth here goes through the same ``add_stage`` + ``add_security_gate`` as app.py, with the context
of cdk.json, so a fixture that builds at all has already passed the cdk-nag gate.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App  # noqa: E402  (jsii reads the variable above when it starts)
from aws_cdk.assertions import Template  # noqa: E402

from stacks.config import StageConfig, load_stage_config  # noqa: E402
from stacks.deployment import add_security_gate, add_stage  # noqa: E402
from stacks.model_environment import LOCAL_ALARM_EMAIL, example_model_context  # noqa: E402

EXAMPLE_MODEL_URL = "s3://example-bucket/model/model.tar.gz"
# What `make synth` passes with -c: cdk.json commits no alarm destination, which production requires.
EXAMPLE_ALARM_EMAIL = LOCAL_ALARM_EMAIL
STACK_KINDS = ("storage", "training", "serving", "api", "edge", "frontdoor")
# The front door's two stacks exist only where front_door_enabled (prod in cdk.json).
STAGE_STACK_KINDS = {"dev": STACK_KINDS[:4], "prod": STACK_KINDS}


def cdk_json_context() -> dict[str, Any]:
    return json.loads((REPO_ROOT / "cdk.json").read_text())["context"]


# The stage's own default model, as `make synth` gives it (a URL, or a package where production needs one).
STAGE_DEFAULT = "stage-default"


def stage_context(stage: str, model_data_url: str | None = STAGE_DEFAULT, **overrides: Any) -> dict:
    """cdk.json's context plus ``-c stage`` / the model keys / per-stage key overrides.

    ``model_data_url``: the stage's default model (:data:`STAGE_DEFAULT`), a ``-c model_data_url``, or None
    for no ``-c`` model key at all (a ``model_package_arn`` override then names the model).
    """
    context = copy.deepcopy(cdk_json_context())
    context["dogbreed:stages"].setdefault(stage, {}).update(overrides)
    context["stage"] = stage
    if not {"alarm_email", "alarm_topic_arn"} & overrides.keys():
        context["alarm_email"] = EXAMPLE_ALARM_EMAIL
    if model_data_url == STAGE_DEFAULT:
        if "model_package_arn" not in overrides:
            context.update(example_model_context(stage, EXAMPLE_MODEL_URL))
    elif model_data_url is not None:
        context["model_data_url"] = model_data_url
    return context


@dataclass(frozen=True)
class SynthesizedStage:
    config: StageConfig
    templates: dict[str, dict]
    outdir: Path

    def template(self, kind: str) -> Template:
        return Template.from_json(self.templates[kind])

    def resources(self, kind: str, resource_type: str) -> dict[str, dict]:
        return {
            logical_id: resource
            for logical_id, resource in self.templates[kind]["Resources"].items()
            if resource["Type"] == resource_type
        }


def synth_stage(outdir: Path, stage: str, model_data_url: str | None = STAGE_DEFAULT, **overrides: Any):
    """Build one stage exactly as app.py does (env-agnostic) and synthesize it; the nag gate runs."""
    app = App(context=stage_context(stage, model_data_url, **overrides), outdir=str(outdir))
    config = load_stage_config(app.node.try_get_context)
    stacks = add_stage(app, config)
    add_security_gate(app)
    assembly = app.synth()
    templates = {
        kind: assembly.get_stack_by_name(stack.stack_name).template
        for kind, stack in stacks.by_kind().items()
    }
    return SynthesizedStage(config=config, templates=templates, outdir=outdir)


@pytest.fixture(scope="session")
def dev(tmp_path_factory) -> SynthesizedStage:
    return synth_stage(tmp_path_factory.mktemp("dev"), "dev")


@pytest.fixture(scope="session")
def prod(tmp_path_factory) -> SynthesizedStage:
    return synth_stage(tmp_path_factory.mktemp("prod"), "prod")


@pytest.fixture(scope="session")
def stages(dev, prod) -> dict[str, SynthesizedStage]:
    return {"dev": dev, "prod": prod}


@pytest.fixture(scope="session")
def dev_instance(tmp_path_factory) -> SynthesizedStage:
    """dev served the way prod is (serving_mode instance), for what holds for every instance-mode stage."""
    return synth_stage(tmp_path_factory.mktemp("dev-instance"), "dev", serving_mode="instance")


@pytest.fixture(scope="session")
def instance_stages(dev_instance, prod) -> dict[str, SynthesizedStage]:
    return {"dev": dev_instance, "prod": prod}


# An AMI id of the right form for the optional training host (training_host_ami_id is required with it).
PINNED_AMI = "ami-0123456789abcdef0"


@pytest.fixture(scope="session")
def training_host(tmp_path_factory) -> SynthesizedStage:
    """dev with the optional EC2 GPU training host: one synth shared by every module that looks at it."""
    return synth_stage(
        tmp_path_factory.mktemp("training-host"),
        "dev",
        training_host_enabled=True,
        training_host_ami_id=PINNED_AMI,
    )
