"""Stop a broken artifact before traffic: serve it the way the endpoint will, and ask for one prediction.

    python -m localdev.check_artifact PATH|s3://bucket/key/model.tar.gz [--server torchserve|inprocess]
        [--stage dev]

Unpacks the artifact as SageMaker does, starts the DLC's toolkit + TorchServe on it with the stage's
Model environment (one worker: the question is whether the artifact loads and answers, not how fast), and
sends one image through ``POST /invocations``. Exit 0 only when the answer is a 200 with predictions
naming the artifact's classes; 1 when it does not serve; 2 when the check cannot run here (no Java or
serving stack for TorchServe, an S3 download that fails, an unknown stage).

Why before ``cdk deploy``: a ``model.pt`` that fails to load crash-loops TorchServe's worker while
TorchServe's ``/ping`` keeps answering 200 ("Healthy") for ``maxRetryTimeoutInSec`` (300 s), so
SageMaker's start-up health check passes a model that cannot serve; every invocation then waits until
SageMaker's 60 s limit. Neither the toolkit nor TorchServe 0.12 lets the handler report a failed load on
``/ping`` (the toolkit has no ping hook; TorchServe's ping counts a retrying worker as running).

``--server inprocess`` runs the handler functions in this process instead (no Java needed).
Repo-only tooling: not part of the artifact.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from inference.model_config import ModelConfig
from stacks.config import ConfigError

from .java_runtime import JavaNotFound, find_java
from .local_endpoint import extract_model_archive
from .toolkit_emulation import ContainerResponse, ToolkitEmulation
from .torchserve_container import ContainerStartError, ServingStackMissing, TorchServeContainer

PROBE_TOP_K = 5


class ArtifactCheckFailed(RuntimeError):
    """The artifact does not serve; the message says where it failed."""


class CannotCheck(RuntimeError):
    """The check could not run (no Java or serving stack, no download, a bad stage): says nothing of it."""


@dataclass(frozen=True)
class CheckResult:
    server: str
    predictions: list[dict]


def serving_stack_available() -> bool:
    """Whether this machine can run ``--server torchserve``: the serving stack installed and Java 17+."""
    if importlib.util.find_spec("sagemaker_pytorch_serving_container") is None:
        return False
    try:
        find_java()
    except JavaNotFound:
        return False
    return True


def check_artifact(source: str | Path, *, server: str = "torchserve", stage: str = "dev") -> CheckResult:
    """Serve ``source`` (a directory, a ``model.tar.gz`` or its ``s3://`` URL) and make one prediction.

    ``server="auto"``: the DLC's TorchServe where this machine can run it, else the handler in-process.
    """
    if server == "auto":
        server = "torchserve" if serving_stack_available() else "inprocess"
    with tempfile.TemporaryDirectory(prefix="check-artifact-") as scratch:
        model_dir = _unpacked(str(source), Path(scratch))
        try:
            config = ModelConfig.load(model_dir)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactCheckFailed(f"model_config.json cannot be read: {exc}") from None
        image = _probe_image(config.image_size)
        headers = {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": f"top_k={PROBE_TOP_K}"}
        if server == "torchserve":
            try:
                with TorchServeContainer(model_dir, _one_worker_environment(stage)) as container:
                    response = container.invoke(image, headers)
            except ContainerStartError as exc:
                raise ArtifactCheckFailed(str(exc)) from None
            except (JavaNotFound, ServingStackMissing, ConfigError) as exc:
                raise CannotCheck(f"cannot start TorchServe: {exc} (or use --server inprocess)") from None
        elif server == "inprocess":
            try:
                emulation = ToolkitEmulation(model_dir)
            except Exception as exc:
                raise ArtifactCheckFailed(f"model_fn failed: {type(exc).__name__}: {exc}") from None
            response = emulation.invoke(image, headers)
        else:
            raise ValueError(f"server must be torchserve or inprocess, not {server!r}")
        return CheckResult(server=server, predictions=_predictions(response, config))


def _one_worker_environment(stage: str) -> dict[str, str]:
    from stacks import model_environment as stage_model

    config = stage_model.stage_config_from_cdk_json(stage)
    return stage_model.model_environment(dataclasses.replace(config, inference_workers=1))


def _unpacked(source: str, scratch: Path) -> str:
    if source.startswith("s3://"):
        archive = scratch / "model.tar.gz"
        _download(source, archive)
        source = str(archive)
    path = Path(source)
    if path.is_dir():
        return str(path)
    if not path.is_file():
        raise ArtifactCheckFailed(f"{source}: no such file or directory")
    target = scratch / "model"
    target.mkdir()
    try:
        return extract_model_archive(str(path), str(target))
    except Exception as exc:  # tarfile.ReadError, gzip's BadGzipFile, a refused member, EOFError...
        raise ArtifactCheckFailed(f"{source} cannot be unpacked as a model.tar.gz: {exc}") from None


def _download(url: str, destination: Path) -> None:
    import boto3  # only for s3:// sources
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket or not key:
        raise CannotCheck(f"{url}: expected s3://BUCKET/KEY")
    try:
        boto3.client("s3").download_file(bucket, key, str(destination))
    except (BotoCoreError, ClientError) as exc:  # no credentials, 403, 404, network
        raise CannotCheck(f"cannot download {url}: {exc}") from None


def _probe_image(size: int) -> bytes:
    """A photo-sized JPEG: the request path a caller takes (decode, resize, crop), not just the network."""
    image = Image.radial_gradient("L").convert("RGB").resize((size * 2, size * 2))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _predictions(response: ContainerResponse, config: ModelConfig) -> list[dict]:
    first_line = response.body.decode("utf-8", errors="replace").split("\n", 1)[0][:500]
    if response.status != 200:
        raise ArtifactCheckFailed(f"the prediction failed: status {response.status}: {first_line}")
    try:
        predictions = json.loads(response.body)["predictions"]
        names_match = all(config.class_names[p["index"]] == p["breed"] for p in predictions)
    except (ValueError, KeyError, TypeError, IndexError):
        raise ArtifactCheckFailed(f"the answer is not the endpoint contract's JSON: {first_line}") from None
    if len(predictions) != min(PROBE_TOP_K, config.num_classes) or not names_match:
        raise ArtifactCheckFailed(f"the answer does not name the artifact's classes: {first_line}")
    return predictions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localdev.check_artifact", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "source", help="the artifact: a model directory, model.tar.gz, or s3://.../model.tar.gz"
    )
    parser.add_argument("--server", choices=("torchserve", "inprocess"), default="torchserve")
    parser.add_argument("--stage", default="dev", help="the cdk.json stage whose Model environment to use")
    args = parser.parse_args(argv)
    try:
        result = check_artifact(args.source, server=args.server, stage=args.stage)
    except ArtifactCheckFailed as exc:
        print(f"check_artifact: {args.source} does not serve: {exc}", file=sys.stderr)
        return 1
    except CannotCheck as exc:  # nothing was learnt about the artifact: a different exit status
        print(f"check_artifact: {exc}", file=sys.stderr)
        return 2
    top = result.predictions[0]
    print(
        f"check_artifact: {args.source} serves ({result.server}): top class {top['breed']!r} "
        f"p={top['probability']:.3f} for a probe image"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
