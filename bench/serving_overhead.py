"""What the serving path adds to a prediction: Lambda handler -> boto3 -> HTTP -> handlers -> model.

One process, one image, five ways of getting its top-5, interleaved (see :mod:`bench.timing`):

``bare``      decode (draft) + evaluation preset + forward + softmax/top-k, straight calls: the floor.
``handlers``  ``input_fn -> predict_fn -> output_fn`` as the toolkit runs them (no HTTP).
``http``      ``POST /invocations`` on the local endpoint with ``http.client`` (keep-alive).
``boto3``     ``sagemaker-runtime.invoke_endpoint`` against the local endpoint (SigV4, botocore).
``lambda``    ``handler.handler(event)`` with a Function URL event (base64 body): the whole path.

The model is the default backbone with random weights, packed by ``training.artifact`` exactly as
training packs a trained one, and served by ``inference.local_endpoint.LocalEndpoint``. Component
costs that the end-to-end numbers cannot separate (base64, SigV4 payload hash, botocore's own
work) are timed on their own with many iterations.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from inference.architecture import build_model
from inference.local_invoke import function_url_event, load_prediction_handler
from inference.model_config import ModelConfig
from inference.preprocessing import IMAGENET_MEAN, IMAGENET_STD, decode_image, resize_size_for

from .images import photo_jpeg
from .timing import Stats, interleaved, percentile, ratio_stats

REPO_ROOT = Path(__file__).resolve().parents[1]
LAMBDA_DIR = REPO_ROOT / "lambda"
ENDPOINT_NAME = "bench-endpoint"
NUM_CLASSES = 133
IMAGE_SIZE = 224
TARGET_RATIO = 1.15
PATHS = ("bare", "handlers", "http", "boto3", "lambda")


def write_random_artifact(model_dir: Path, arch: str, num_classes: int = NUM_CLASSES) -> Path:
    """A deployable artifact (``training.artifact.write_artifact``) holding random weights for ``arch``."""
    from training.artifact import export_state_dict, write_artifact

    torch.manual_seed(0)
    config = ModelConfig(
        arch=arch,
        class_names=tuple(f"Breed {index:03d}" for index in range(num_classes)),
        image_size=IMAGE_SIZE,
        resize_size=resize_size_for(IMAGE_SIZE),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        metadata={"note": "random weights, for benchmarks only"},
    )
    return write_artifact(model_dir, export_state_dict(build_model(arch, num_classes)), config)


@contextlib.contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _Quiet:
    """Swallows the handler's one-JSON-line-per-request log (Lambda ships stdout to CloudWatch)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _lambda_call(module: Any, event: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    def call() -> dict[str, Any]:
        with contextlib.redirect_stdout(_Quiet()):
            response = module.handler(event, None)
        if response["statusCode"] != 200:
            raise RuntimeError(f"lambda answered {response['statusCode']}: {response['body'][:200]}")
        return response

    return call


WHITESPACE_REMOVAL = "lambda: whitespace removal (line-wrapped base64 only)"


def component_costs(image: bytes, module: Any, iterations: int) -> dict[str, Any]:
    """Per-request CPU work outside the model, each timed alone (ms, min/median/max over iterations)."""
    event = function_url_event(image, "image/jpeg", top_k=5)
    settings = module.SETTINGS
    # The handler's own sibling module, imported with it from lambda/ (on sys.path since the import).
    whitespace = sys.modules["prediction_request"].BASE64_WHITESPACE
    body_b64 = event["body"]
    body_array = bytearray(image)  # TorchServe hands the handler a bytearray; bytes() of bytes is no copy
    costs: dict[str, Callable[[], object]] = {
        "lambda: parse_event (base64 decode, validation)": lambda: module.parse_event(event, settings.limits),
        "lambda: base64.b64decode alone": lambda: base64.b64decode(body_b64, validate=True),
        # What prediction_request._b64decode does only when the strict decode fails (line-wrapped base64).
        WHITESPACE_REMOVAL: lambda: body_b64.encode("ascii").translate(None, whitespace),
        "boto3: SigV4 payload SHA-256 of the body": lambda: hashlib.sha256(image).hexdigest(),
        "endpoint: bytes(bytearray body) in input_fn": lambda: bytes(body_array),
    }
    samples = interleaved(costs, repeats=iterations, warmup=2)
    return {name: Stats.of(values).scaled(1000).as_dict() for name, values in samples.items()}


def run(
    arch: str = "resnet50",
    repeats: int = 20,
    component_iterations: int = 50,
    images: dict[str, bytes] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    from inference.local_endpoint import LocalEndpoint

    images = images or {"phone": photo_jpeg(), "small": photo_jpeg((640, 480), seed=1)}
    resize = resize_size_for(IMAGE_SIZE)
    out: dict[str, Any] = {
        "arch": arch,
        "repeats": repeats,
        "target_ratio": TARGET_RATIO,
        "threads": torch.get_num_threads(),
        "images": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        model_dir = write_random_artifact(Path(tmp) / "model", arch)
        with LocalEndpoint(str(model_dir), name=ENDPOINT_NAME) as endpoint:
            module = load_prediction_handler(endpoint.url, ENDPOINT_NAME)
            with patched_environ(endpoint.client_environment()):
                import boto3

                runtime = boto3.client("sagemaker-runtime")
            loaded = endpoint.toolkit.model
            connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=60)
            for name, image in images.items():
                out["images"][name] = _measure_image(
                    image, loaded, endpoint, connection, runtime, module, resize, repeats
                )
                entry = out["images"][name]
                log(
                    f"  {name}: bare {entry['ms']['bare']['median']:.1f} ms, lambda path "
                    f"{entry['ms']['lambda']['median']:.1f} ms, ratio "
                    f"{entry['ratio_vs_bare']['lambda']['median']:.3f}"
                )
            connection.close()
            out["components"] = {
                name: component_costs(image, module, component_iterations) for name, image in images.items()
            }
    return out


def _measure_image(
    image: bytes,
    loaded: Any,
    endpoint: Any,
    connection: http.client.HTTPConnection,
    runtime: Any,
    module: Any,
    resize: int,
    repeats: int,
) -> dict[str, Any]:
    def bare() -> list[int]:
        tensor = loaded.transform(decode_image(image, min_side=resize)).unsqueeze(0)
        with torch.inference_mode():
            return loaded.network(tensor).softmax(dim=1)[0].topk(5).indices.tolist()

    def handlers() -> bytes:
        response = endpoint.toolkit.invoke(image, {"Content-Type": "image/jpeg"})
        if response.status != 200:
            raise RuntimeError(response.body[:200])
        return response.body

    def raw_http() -> bytes:
        connection.request("POST", "/invocations", body=image, headers={"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(body[:200])
        return body

    def boto() -> bytes:
        response = runtime.invoke_endpoint(
            EndpointName=ENDPOINT_NAME,
            ContentType="image/jpeg",
            Accept="application/json",
            CustomAttributes="top_k=5",
            Body=image,
        )
        return response["Body"].read()

    calls = {
        "bare": bare,
        "handlers": handlers,
        "http": raw_http,
        "boto3": boto,
        "lambda": _lambda_call(module, function_url_event(image, "image/jpeg", top_k=5)),
    }
    samples = interleaved(calls, repeats=repeats, warmup=2)
    ms = {name: [s * 1000 for s in values] for name, values in samples.items()}
    return {
        "bytes": len(image),
        "ms": {
            name: {**Stats.of(values).as_dict(), "p99": percentile(values, 99)} for name, values in ms.items()
        },
        "ratio_vs_bare": {name: ratio_stats(samples[name], samples["bare"]).as_dict() for name in samples},
        # Median of per-repeat differences: what each hop adds, in ms.
        "added_ms": {
            "handlers vs bare (input_fn/predict_fn/output_fn, JSON)": _median_diff(
                ms["handlers"], ms["bare"]
            ),
            "http vs handlers (HTTP server, loopback transfer)": _median_diff(ms["http"], ms["handlers"]),
            "boto3 vs http (botocore, SigV4, service error parsing)": _median_diff(ms["boto3"], ms["http"]),
            "lambda vs boto3 (event parsing, base64, response shaping, log)": _median_diff(
                ms["lambda"], ms["boto3"]
            ),
            "lambda vs bare (everything)": _median_diff(ms["lambda"], ms["bare"]),
        },
    }


def _median_diff(a: list[float], b: list[float]) -> float:
    return Stats.of([x - y for x, y in zip(a, b, strict=True)]).median


def worker_capacity(
    arch: str, image: bytes, workers: int, threads: int, requests_per_worker: int
) -> dict[str, float]:
    """Requests/s of the per-request work (decode + preset + forward) with N processes x T threads.

    This is the layout choice TorchServe makes on a CPU instance (``SAGEMAKER_TS_MIN/MAX_WORKERS``
    workers, each with its own intra-op thread pool): one worker with every core, or one worker
    per core with one thread each.
    """
    import multiprocessing as mp

    context = mp.get_context("spawn")
    ready = context.Barrier(workers + 1)
    results = context.Queue()
    processes = [
        context.Process(
            target=_capacity_worker, args=(arch, image, threads, requests_per_worker, ready, results)
        )
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    ready.wait(timeout=600)
    started = time.perf_counter()
    latencies = [results.get(timeout=600) for _ in range(workers)]
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join(timeout=60)
    per_request = [value for batch in latencies for value in batch]
    return {
        "workers": workers,
        "threads": threads,
        "requests": len(per_request),
        "rps": len(per_request) / elapsed,
        "latency_ms_p50": percentile(per_request, 50) * 1000,
        "latency_ms_p99": percentile(per_request, 99) * 1000,
    }


def _capacity_worker(arch, image, threads, requests, ready, results) -> None:  # pragma: no cover - subprocess
    torch.set_num_threads(threads)
    from inference.preprocessing import eval_transform

    torch.manual_seed(0)
    network = build_model(arch, NUM_CLASSES).eval()
    transform = eval_transform(IMAGE_SIZE, resize_size_for(IMAGE_SIZE))
    resize = resize_size_for(IMAGE_SIZE)

    def once() -> None:
        tensor = transform(decode_image(image, min_side=resize)).unsqueeze(0)
        with torch.inference_mode():
            network(tensor).softmax(dim=1)[0].topk(5)

    once()
    once()
    ready.wait(timeout=600)
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        once()
        latencies.append(time.perf_counter() - started)
    results.put(latencies)


def capacity(arch: str, image: bytes, cpus: int, requests: int, rounds: int = 3, log=print) -> dict[str, Any]:
    """Worker layouts on this host's ``cpus`` cores: 1 x all threads vs one single-threaded worker per core.

    The layouts take turns over ``rounds`` rounds (A B, B A, A B ...), so that a change in the
    machine's load during the run lands on both sides of the ratio; each layout's req/s is the
    median of its rounds.
    """
    layouts = [(1, cpus)]
    if cpus > 1:
        layouts.append((cpus, 1))
    runs: dict[tuple[int, int], list[dict[str, float]]] = {layout: [] for layout in layouts}
    for round_index in range(rounds):
        for workers, threads in layouts if round_index % 2 == 0 else layouts[::-1]:
            # Same total work per layout: each worker does its share of the requests.
            measured = worker_capacity(arch, image, workers, threads, max(2, requests // workers))
            runs[(workers, threads)].append(measured)
            log(
                f"  round {round_index + 1}: {workers} worker(s) x {threads} thread(s): "
                f"{measured['rps']:.1f} req/s"
            )
    out: dict[str, Any] = {
        "arch": arch,
        "rounds": rounds,
        "layouts": [combine_rounds(r) for r in runs.values()],
    }
    out["best"] = max(out["layouts"], key=lambda entry: entry["rps"])
    return out


def combine_rounds(measured: list[dict[str, float]]) -> dict[str, Any]:
    """One layout's rounds as one entry: median req/s (with the spread), median latency percentiles."""
    rps = Stats.of([entry["rps"] for entry in measured])
    return {
        "workers": measured[0]["workers"],
        "threads": measured[0]["threads"],
        "requests": sum(entry["requests"] for entry in measured),
        "rps": rps.median,
        "rps_min": rps.min,
        "rps_max": rps.max,
        "latency_ms_p50": Stats.of([entry["latency_ms_p50"] for entry in measured]).median,
        "latency_ms_p99": Stats.of([entry["latency_ms_p99"] for entry in measured]).median,
    }


def ratio_summary(result: dict[str, Any], image: str = "phone") -> dict[str, float]:
    return result["images"][image]["ratio_vs_bare"]["lambda"]
