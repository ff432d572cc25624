"""The SageMaker Model's container environment: one definition for the stack and the local container; and
the stage config that offline tools and synths build from cdk.json without a real model.

``stacks.constructs.inference_model`` puts :func:`model_environment` into the ``CfnModel``;
``localdev.local_endpoint --server torchserve`` starts the DLC's TorchServe with the same dict, read from
the same cdk.json through :func:`stage_config_from_cdk_json`. Plain Python, no CDK import.

What the pytorch-inference:2.6.0 DLC (sagemaker-pytorch-inference 2.0.25, TorchServe 0.12.0) does with it,
checked against the real stack by tests/serving/test_torchserve_settings.py:

* ``SAGEMAKER_MODEL_SERVER_TIMEOUT`` never reaches TorchServe: the toolkit appends its settings to
  ``etc/default-ts.properties``, which has no trailing newline, so the line reads
  ``enable_model_api=truedefault_response_timeout=N`` and TorchServe keeps its 120 s default.
  ``TS_DEFAULT_RESPONSE_TIMEOUT`` does apply (the toolkit's properties set ``enable_envvars_config=true``,
  and TorchServe reads ``TS_<PROPERTY>`` variables over the file). Both are set, to the same value, so
  a toolkit that fixes the newline changes nothing.
* ``SAGEMAKER_TS_RESPONSE_TIMEOUT`` (and the other ``SAGEMAKER_TS_*``) are not used: setting any of them
  makes the toolkit write a ``models=`` entry whose worker counts default to 1, which silently overrides
  ``SAGEMAKER_MODEL_SERVER_WORKERS``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stacks.config import StageConfig, committed_stage_values, load_stage_config, model_package_group_name

CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"
# The local container serves a local directory; the URL only has to pass validation. Alarms do not reach
# the container either, but a production stage's config must name a destination.
LOCAL_MODEL_DATA_URL = "s3://local-model/model.tar.gz"
LOCAL_ALARM_EMAIL = "alarms@example.com"


def model_environment(config: StageConfig) -> dict[str, str]:
    """The ``Environment`` of the stage's SageMaker Model (the PyTorch inference DLC container)."""
    timeout = str(config.model_server_timeout_seconds)
    return {
        # The SageMaker PyTorch toolkit loads code/inference.py from the artifact.
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        # The model server gives up shortly before the Lambda's read timeout, so a slow request is cut by the
        # server (an answer the handler maps) rather than retried by the client into a busy worker.
        "TS_DEFAULT_RESPONSE_TIMEOUT": timeout,
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": timeout,
        # TorchServe's default is one worker per GPU (else per vCPU): on a GPU instance a single worker
        # would decode every JPEG on one core while the GPU idles. Each worker gets a small intra-op pool:
        # one pool per worker sized to the whole machine oversubscribes the cores under load
        # (docs/benchmarks.md, serving capacity).
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(config.inference_workers),
        "OMP_NUM_THREADS": str(config.inference_threads_per_worker),
    }


def stage_config_from_cdk_json(
    stage: str, model_data_url: str = LOCAL_MODEL_DATA_URL, cdk_json: Path = CDK_JSON
) -> StageConfig:
    """The stage's validated config from cdk.json, as ``cdk synth -c stage=STAGE`` builds it.

    For tools whose work does not depend on which model the stage serves (the local container, preflight,
    deploy-check): see :func:`example_model_context` for the model it gets.
    """
    context: dict[str, Any] = json.loads(Path(cdk_json).read_text())["context"]
    context = {
        **context,
        **_example_model_keys(context, stage, model_data_url),
        "stage": stage,
        "alarm_email": LOCAL_ALARM_EMAIL,
    }
    return load_stage_config(context.get)


def example_model_context(
    stage: str, model_data_url: str = LOCAL_MODEL_DATA_URL, cdk_json: Path = CDK_JSON
) -> dict[str, str]:
    """The ``-c`` model keys an offline synth of ``stage`` needs: none where cdk.json names the stage's
    package, a placeholder version of the stage's group where production requires a package, else
    ``model_data_url``. `make synth` and the tests synthesize with these."""
    return _example_model_keys(json.loads(Path(cdk_json).read_text())["context"], stage, model_data_url)


def _example_model_keys(context: dict[str, Any], stage: str, model_data_url: str) -> dict[str, str]:
    values = committed_stage_values(context, stage)
    if values.get("model_package_arn"):
        return {}
    if values.get("production"):
        return {"model_package_arn": placeholder_package_arn(stage)}
    return {"model_data_url": model_data_url}


def placeholder_package_arn(stage: str) -> str:
    """A well-formed version 1 of the stage's group, for synths and tools that never resolve it."""
    return f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{model_package_group_name(stage)}/1"


if __name__ == "__main__":
    # `python -m stacks.model_environment STAGE [MODEL_DATA_URL]`: the -c arguments of an offline synth.
    import sys

    print(" ".join(f"-c {key}={value}" for key, value in example_model_context(*sys.argv[1:3]).items()))
