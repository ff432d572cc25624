"""The offline end-to-end demo, after ``make synth``: data → DDP training → model.tar.gz → endpoint → API.

``python -m scripts.demo [--work-dir build/demo]`` (``make demo`` runs it) needs no AWS account and no
network: it generates a synthetic ImageFolder set, trains on it with 2 DDP processes on the CPU,
packs the artifact exactly as SageMaker would receive it, unpacks it into a local endpoint, and sends
one test image through ``lambda/handler.py`` with real boto3, printing the top 5 and each stage's time.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENDPOINT_NAME = "dogbreed-demo"
# Small enough to train in about a minute on 2 cores, big enough to learn well above chance.
DATA_ARGS = ["--classes", "6", "--per-class", "100", "--size", "80", "--seed", "7"]
TRAIN_ARGS = [
    "--arch", "resnet18", "--weights", "none", "--epochs", "10", "--batch-size", "24",
    "--image-size", "64", "--lr", "0.05", "--workers", "1", "--seed", "7",
]  # fmt: skip


@contextmanager
def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    print(f"\n==> {name}", flush=True)
    started = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - started
    print(f"    done in {timings[name]:.1f} s", flush=True)


def run(*args: str) -> None:
    subprocess.run([sys.executable, *args], cwd=REPO, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "demo")
    args = parser.parse_args(argv)
    work: Path = args.work_dir.resolve()
    if work.exists():
        shutil.rmtree(work)
    data, model_dir, tarball, served = work / "data", work / "model", work / "model.tar.gz", work / "endpoint"
    timings: dict[str, float] = {}

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
        run("-m", "training.artifact", "--model-dir", str(model_dir), "--output", str(tarball))
        with tarfile.open(tarball) as archive:
            archive.extractall(served, filter="data")
        print(f"    {tarball} ({tarball.stat().st_size / 1e6:.1f} MB), unpacked into {served}")

    from inference.local_endpoint import LocalEndpoint

    with stage("start the local endpoint (model_fn + warm-up)", timings):
        endpoint = LocalEndpoint(str(served), name=ENDPOINT_NAME).start()
        print(f"    serving on {endpoint.url} as endpoint {ENDPOINT_NAME!r}")
    try:
        os.environ.update(endpoint.client_environment(), ENDPOINT_NAME=ENDPOINT_NAME)
        sys.path.insert(0, str(REPO / "lambda"))
        with stage("import lambda/handler.py (cold start)", timings):
            handler = importlib.import_module("handler")
        image_path = sorted((data / "test").glob("*/*.jpg"))[0]
        event = {
            "version": "2.0",
            "rawPath": "/",
            "requestContext": {"http": {"method": "POST", "path": "/"}},
            "headers": {"content-type": "image/jpeg"},
            "queryStringParameters": {"top_k": "5"},
            "body": base64.b64encode(image_path.read_bytes()).decode(),
            "isBase64Encoded": True,
        }
        with stage(f"classify {image_path.relative_to(work)} through the Lambda handler", timings):
            response = handler.handler(event, None)
    finally:
        endpoint.stop()

    print(f"\nHTTP {response['statusCode']}  (true class: {image_path.parent.name})")
    body = json.loads(response["body"])
    for rank, prediction in enumerate(body.get("predictions", []), start=1):
        print(f"  {rank}. {prediction['breed']:<28} p={prediction['probability']:.3f}  (index {prediction['index']})")
    if response["statusCode"] != 200:
        print(json.dumps(body, indent=2))
    print("\nstage timings:")
    for name, seconds in timings.items():
        print(f"  {seconds:7.2f} s  {name}")
    return 0 if response["statusCode"] == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
