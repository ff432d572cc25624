"""The deployable artifact: ``model.pt`` + ``model_config.json`` + ``code/``, and its ``model.tar.gz``.

Layout (the SageMaker PyTorch inference container's "model directory" contract)::

    model.pt              plain state_dict, CPU tensors, loads with torch.load(..., weights_only=True)
    model_config.json     inference.model_config.ModelConfig
    code/inference.py     the handler, plus every other module of inference/ (inference.ENDPOINT_CODE_FILES)

The container (torch 2.6) is older than the training image, so the weights are a plain tensor dict:
no pickled classes, no DDP ``module.`` or ``torch.compile`` ``_orig_mod.`` prefixes, standard
(contiguous) layouts.

``python -m training.artifact --model-dir OUT --output model.tar.gz`` checks an artifact directory,
packs it, then serves the archive once through the DLC's TorchServe (``localdev.check_artifact``;
``--serve-check`` picks the server or ``none``); ``--check-only`` just checks that it loads.
"""

from __future__ import annotations

import argparse
import gzip
import io
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

import inference
from inference.architecture import build_model
from inference.model_config import CONFIG_FILENAME, WEIGHTS_FILENAME, ModelConfig

from .checkpoint import atomic_save
from .model import strip_prefixes

CODE_DIR = "code"
INFERENCE_SOURCE_DIR = Path(inference.__file__).resolve().parent


class ArtifactError(ValueError):
    """The model directory is not a complete, loadable artifact; the message says what is wrong."""


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def export_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU, contiguous, prefix-free copies of the weights and buffers."""
    state = strip_prefixes(unwrap(model).state_dict())
    return {name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in state.items()}


def write_artifact(model_dir: Path, state_dict: dict[str, torch.Tensor], config: ModelConfig) -> Path:
    """Write weights, config and a fresh copy of the endpoint code into ``model_dir``."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    # Atomic and outside model_dir until whole: a run killed while writing leaves no half model.pt
    # that load_artifact or a packaging step would take for the trained model.
    atomic_save(state_dict, model_dir / WEIGHTS_FILENAME)
    config.save(model_dir)
    code = model_dir / CODE_DIR
    if code.exists():
        shutil.rmtree(code)
    code.mkdir()
    for name in inference.ENDPOINT_CODE_FILES:
        shutil.copy2(INFERENCE_SOURCE_DIR / name, code / name)
    return model_dir


def load_artifact(model_dir: Path) -> tuple[nn.Module, ModelConfig]:
    """Rebuild the model exactly as the endpoint does; raises :class:`ArtifactError` when it cannot."""
    model_dir = Path(model_dir)
    for name in (WEIGHTS_FILENAME, CONFIG_FILENAME):
        if not (model_dir / name).is_file():
            raise ArtifactError(f"{model_dir} has no {name}")
    missing = [n for n in inference.ENDPOINT_CODE_FILES if not (model_dir / CODE_DIR / n).is_file()]
    if missing:
        raise ArtifactError(f"{model_dir / CODE_DIR} lacks {', '.join(missing)}")
    try:
        config = ModelConfig.load(model_dir)
        state = torch.load(model_dir / WEIGHTS_FILENAME, map_location="cpu", weights_only=True)
        model = build_model(config.arch, config.num_classes)
        model.load_state_dict(state, strict=True)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ArtifactError(f"{model_dir} does not load: {exc}") from None
    return model.eval(), config


def artifact_files(model_dir: Path) -> list[Path]:
    """What goes into model.tar.gz, relative to ``model_dir``: nothing else (no checkpoints, no metrics)."""
    model_dir = Path(model_dir)
    code = sorted(
        p.relative_to(model_dir)
        for p in (model_dir / CODE_DIR).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    return [Path(WEIGHTS_FILENAME), Path(CONFIG_FILENAME), *code]


def package(model_dir: Path, output: Path) -> Path:
    """Check the artifact, then write a reproducible ``model.tar.gz`` (sorted, zero mtimes, root-owned)."""
    load_artifact(model_dir)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in artifact_files(model_dir):
            info = tar.gettarinfo(str(Path(model_dir) / rel), arcname=rel.as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
            info.mode = 0o644
            with open(Path(model_dir) / rel, "rb") as handle:
                tar.addfile(info, handle)
    with open(output, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buffer.getvalue())
    return output


def serve_check(archive: Path, server: str = "auto") -> None:
    """Serve the packed archive once the way the endpoint will (``localdev.check_artifact``)."""
    from localdev.check_artifact import ArtifactCheckFailed, CannotCheck, check_artifact

    try:
        result = check_artifact(archive, server=server)
    except (ArtifactCheckFailed, CannotCheck) as exc:
        raise ArtifactError(f"{archive} does not serve: {exc}") from None
    top = result.predictions[0]
    print(f"{archive} serves ({result.server}): one prediction, top class {top['breed']!r}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.artifact", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, type=Path, help="directory that training wrote")
    parser.add_argument("--output", type=Path, help="model.tar.gz to write")
    parser.add_argument("--check-only", action="store_true", help="only check that the artifact loads")
    parser.add_argument(
        "--serve-check",
        choices=("auto", "torchserve", "inprocess", "none"),
        default="auto",
        help="after packing, serve model.tar.gz once with localdev.check_artifact (auto: the DLC's "
        "TorchServe where the serving stack and Java are installed, else the handler in-process)",
    )
    args = parser.parse_args(argv)
    if not args.output and not args.check_only:
        parser.error("give --output FILE or --check-only")
    try:
        _, config = load_artifact(args.model_dir)
        print(f"{args.model_dir}: {config.arch}, {config.num_classes} classes, {config.image_size} px: loads")
        if args.output:
            path = package(args.model_dir, args.output)
            print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
            if args.serve_check != "none":
                serve_check(path, args.serve_check)
    except ArtifactError as exc:
        raise SystemExit(f"training.artifact: {exc}") from None


if __name__ == "__main__":
    main()
