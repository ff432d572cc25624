"""The offline end-to-end demo, after ``make synth``: data → DDP training → model.tar.gz → endpoint → API.

``python -m scripts.demo [--work-dir build/demo]`` (``make demo`` runs it) needs no AWS account and no
network: it generates a synthetic ImageFolder set, trains on it with 2 DDP processes on the CPU,
packs the artifact exactly as SageMaker would receive it, unpacks it into a local endpoint run by the
DLC's real serving stack (the SageMaker PyTorch
toolkit starting TorchServe with the dev stage's Model environment), and sends one test image per
class through ``lambda/handler.py``: handler -> botocore -> the runtime API front -> TorchServe ->
the toolkit -> ``code/inference.py``. It prints the top 5 and each stage's time, and writes the
``CreateModelPackage`` request ``training.register`` would send for the model (a dry run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENDPOINT_NAME = "dogbreed-demo"
DEMO_REGION = "us-east-1"
# About 3 minutes of training on 2 cores. Shape-only class pairs (circle vs square) need enough samples
# and crops that keep the whole object: at 12 epochs or --min-crop-scale 0.35 the model learns colour
# and texture only (~70% test top-1). More distinct images per class and fewer epochs generalize better
# per step than the other way round, and 48 px crops run ~30% faster per image than 56 or 64 px here
# (measured 2026-12-01: 100/class x 30 epochs at 48 px 84%, 160/class x 16 epochs at 48 px 87% in 200 s,
# at 56 px 90% in 270 s; the earlier 100/class x 40 epochs at 64 px reached 95% in about 320 s).
DATA_ARGS = ["--classes", "6", "--per-class", "160", "--size", "64", "--seed", "7"]
TRAIN_ARGS = [
    "--arch", "resnet18", "--weights", "none", "--epochs", "14", "--batch-size", "24",
    "--image-size", "48", "--opt", "adamw", "--lr", "0.002", "--lr-warmup-epochs", "1",
    "--min-crop-scale", "0.7", "--workers", "1", "--seed", "7",
]  # fmt: skip


@contextmanager
def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    print(f"\n==> {name}", flush=True)
    started = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - started
    print(f"    done in {timings[name] * 1000:.0f} ms", flush=True)


def run(*args: str) -> None:
    # Fixed argument lists of this repo's own modules, run with this interpreter.
    subprocess.run([sys.executable, *args], cwd=REPO, check=True)  # noqa: S603


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "demo")
    args = parser.parse_args(argv)
    work: Path = args.work_dir.resolve()
    timings: dict[str, float] = {}
    tarball = train_and_package(work, timings)
    data = work / "data"
    with stage("register (dry run): the model package version this model would become", timings):
        registration = dry_run_registration(work)

    from localdev.local_endpoint import LocalEndpoint
    from localdev.local_invoke import function_url_event, load_prediction_handler

    with stage(
        "start TorchServe on model.tar.gz as the DLC does (unpack, toolkit, workers' model_fn)", timings
    ):
        endpoint = LocalEndpoint(str(tarball), name=ENDPOINT_NAME, server="torchserve", stage="dev").start()
        workers = endpoint.toolkit.describe_model()["workers"]
        print(
            f"    serving on {endpoint.url} as endpoint {ENDPOINT_NAME!r}: TorchServe, {len(workers)} workers"
        )
    try:
        with stage("import lambda/handler.py (cold start: settings + botocore client)", timings):
            handler = load_prediction_handler(endpoint.url, endpoint.name)
        # The first test image of every class: one full answer, then one line per class.
        images = [sorted(folder.glob("*.jpg"))[0] for folder in sorted((data / "test").iterdir())]
        with stage(f"classify {len(images)} test images (one per class) through the Lambda handler", timings):
            responses = [
                handler.handler(function_url_event(path.read_bytes(), "image/jpeg", top_k=5), None)
                for path in images
            ]
    finally:
        endpoint.stop()

    first = json.loads(responses[0]["body"])
    status, request_id = responses[0]["statusCode"], first.get("request_id")
    print(f"\n{images[0].relative_to(work)}: HTTP {status}, request id {request_id}")
    for rank, prediction in enumerate(first.get("predictions", []), start=1):
        breed, probability, index = prediction["breed"], prediction["probability"], prediction["index"]
        print(f"  {rank}. {breed:<28} p={probability:.3f}  (index {index})")
    print("\none image per class (true class -> top-1):")
    for path, response in zip(images, responses, strict=True):
        body = json.loads(response["body"])
        if response["statusCode"] != 200:
            print(f"  {path.parent.name:<28} HTTP {response['statusCode']}: {body['error']}")
            continue
        top = body["predictions"][0]
        mark = "ok" if top["index"] == images.index(path) else "wrong"
        print(f"  {path.parent.name:<28} -> {top['breed']:<24} p={top['probability']:.2f}  {mark}")
    metrics = json.loads((work / "output" / "metrics.json").read_text())
    print(
        f"\nthe model: {TRAIN_ARGS[1]} from scratch, test top-1 {metrics['test_acc1']:.1%} on "
        f"{metrics['test_samples']} images (chance {1 / len(images):.1%}); curves in {work / 'output'}"
    )
    request = registration.request
    print(
        f"\nregistered (dry run) into {request['ModelPackageGroupName']} as "
        f"{request['ModelApprovalStatus']}: "
        f"{request['ModelPackageDescription']}; the request is in {work / 'create_model_package.json'}.\n"
        "This demo serves its artifact directly, the experiment path (-c model_data_url); a deployed stage "
        "serves an approved package named in cdk.json (README, Deploying)."
    )
    print("\nstage timings:")
    for name, seconds in timings.items():
        print(f"  {seconds:7.2f} s  {name}")
    return 0 if all(r["statusCode"] == 200 for r in responses) else 1


def train_and_package(work: Path, timings: dict[str, float]) -> Path:
    """The demo's model from scratch in ``work`` (emptied first): synthetic data, 2-process DDP training,
    ``model.tar.gz``; returns the archive. ``localdev.serve`` trains with this when it has no model."""
    if work.exists():
        shutil.rmtree(work)
    data, model_dir, tarball = work / "data", work / "model", work / "model.tar.gz"
    with stage("generate the synthetic dataset", timings):
        run("-m", "training.synthetic", "--out", str(data), *DATA_ARGS)
    with stage("train with DDP: 2 processes, gloo on CPU", timings):
        run(
            "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "training.train", "--data-dir", str(data), "--model-dir", str(model_dir),
            "--checkpoint-dir", str(work / "checkpoints"), "--output-dir", str(work / "output"),
            *TRAIN_ARGS,
        )  # fmt: skip
    with stage("package model.tar.gz", timings):
        # The serve check training.artifact would run next is the caller's endpoint start (the demo's
        # TorchServe on the packed archive), which stops with the worker's error if it does not load.
        run("-m", "training.artifact", "--model-dir", str(model_dir), "--output", str(tarball),
            "--serve-check", "none")  # fmt: skip
        print(f"    {tarball} ({tarball.stat().st_size / 1e6:.1f} MB)")
    return tarball


def dry_run_registration(work: Path):
    """The CreateModelPackage request training.register would send for the demo's model, offline."""
    from training.register import load_metrics, prepare, stage_config

    # Where training.launch's job would have written it: the request is built exactly as for that artifact.
    url = (
        f"s3://dogbreed-dev-123456789012-{DEMO_REGION}/training-output/dogbreed-dev-demo/output/model.tar.gz"
    )
    metrics = load_metrics(str(work / "output" / "metrics.json"))
    registration = prepare(stage_config("dev", url), model_data_url=url, metrics=metrics, region=DEMO_REGION)
    (work / "create_model_package.json").write_text(json.dumps(registration.request, indent=2) + "\n")
    print(f"    {json.dumps(registration.request['CustomerMetadataProperties'])}")
    return registration


if __name__ == "__main__":
    sys.exit(main())
