"""What the serving path adds to a prediction: Lambda handler -> boto3 -> HTTP -> handlers -> model.

One image, five ways of getting its top-5 in this process, interleaved (see :mod:`bench.timing`):

``bare``      decode (draft) + evaluation preset + forward + softmax/top-k, straight calls: the floor.
``handlers``  ``input_fn -> predict_fn -> output_fn`` as the toolkit runs them (no HTTP).
``http``      ``POST /invocations`` on the local endpoint with ``http.client`` (keep-alive).
``boto3``     ``sagemaker-runtime.invoke_endpoint`` against the local endpoint (SigV4, botocore).
``lambda``    ``handler.handler(event)`` with a Function URL event (base64 body): the whole path.

Those run against the in-process endpoint (``server="inprocess"``, the toolkit emulation). Beside
them, the same artifact served by the DLC's real stack (``server="torchserve"``: the SageMaker
PyTorch toolkit starting TorchServe 0.12) with one worker and the same number of intra-op threads,
so that the difference is what TorchServe and the toolkit add, not a worker layout:

``torchserve``         ``POST /invocations`` straight to TorchServe's port (keep-alive), as
                       SageMaker's front calls the container.
``lambda_torchserve``  the Lambda handler -> boto3 -> runtime front -> TorchServe: the path
                       production runs, and the one the target ratio is judged on when measured.

Where the serving stack is not installed (``localdev.check_artifact.serving_stack_available``)
those two paths are skipped with a note in the results.

The model is the default backbone with random weights, packed by ``training.artifact`` exactly as
training packs a trained one, and served by ``localdev.local_endpoint.LocalEndpoint``. Every path
must answer the same top-5 as ``bare`` (checked once per image before timing). Component costs
that the end-to-end numbers cannot separate (base64, SigV4 payload hash, botocore's own work) are
timed on their own with many iterations.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import http.client
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from inference.architecture import build_model
from inference.model_config import ModelConfig
from inference.preprocessing import IMAGENET_MEAN, IMAGENET_STD, decode_image, resize_size_for
from localdev.local_invoke import function_url_event, load_prediction_handler

from .decisions import PRODUCTION_PATH, judged_path
from .images import photo_jpeg
from .timing import Stats, interleaved, percentile, ratio_stats

REPO_ROOT = Path(__file__).resolve().parents[1]
LAMBDA_DIR = REPO_ROOT / "lambda"
ENDPOINT_NAME = "bench-endpoint"
NUM_CLASSES = 133
IMAGE_SIZE = 224
TARGET_RATIO = 1.15
PATHS = ("bare", "handlers", "http", "boto3", "lambda")
TORCHSERVE_PATHS = ("torchserve", "lambda_torchserve")
# Untimed requests sent to a freshly started TorchServe before any timing: its Java frontend starts
# interpreted and speeds up as the JIT compiles its hot paths (in a development run the frontend's
# CPU per request fell from about 17 ms to 6-8 ms over the first 200 requests). A long-running
# endpoint is past that; the two untimed rounds of bench.timing.interleaved are not.
TORCHSERVE_WARMUP_REQUESTS = 50
# What TorchServe adds, per repeat: (label, the TorchServe path, the in-process path it replaces).
TORCHSERVE_COMPARISONS = (
    ("torchserve vs handlers", "torchserve", "handlers"),
    ("lambda_torchserve vs lambda", "lambda_torchserve", "lambda"),
)


def torchserve_environment(threads: int, stage: str = "dev") -> dict[str, str]:
    """The stage's SageMaker Model environment with one worker of ``threads`` intra-op threads."""
    from stacks.model_environment import model_environment, stage_config_from_cdk_json

    config = dataclasses.replace(
        stage_config_from_cdk_json(stage), inference_workers=1, inference_threads_per_worker=threads
    )
    return model_environment(config)


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
    torchserve: bool = True,
    torchserve_warmup: int = TORCHSERVE_WARMUP_REQUESTS,
) -> dict[str, Any]:
    """Every path for every image; ``torchserve=False`` measures the in-process paths only."""
    from localdev.local_endpoint import LocalEndpoint

    images = images or {"phone": photo_jpeg(), "small": photo_jpeg((640, 480), seed=1)}
    resize = resize_size_for(IMAGE_SIZE)
    threads = torch.get_num_threads()
    out: dict[str, Any] = {
        "arch": arch,
        "repeats": repeats,
        "target_ratio": TARGET_RATIO,
        "threads": threads,
        "images": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        model_dir = write_random_artifact(Path(tmp) / "model", arch)
        with LocalEndpoint(str(model_dir), name=ENDPOINT_NAME) as endpoint:
            module = load_prediction_handler(endpoint.url, ENDPOINT_NAME)
            runtime = _runtime_client(endpoint)
            loaded = endpoint.toolkit.model
            with contextlib.ExitStack() as served:
                real = _start_torchserve(model_dir, threads, torchserve, served, log)
                out["torchserve"] = real.pop("facts")
                connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=60)
                served.callback(connection.close)
                for index, (name, image) in enumerate(images.items()):
                    extra = {path: make(image) for path, make in real.items()}  # TorchServe's, if up
                    if extra and index == 0:
                        _warm_up(extra["torchserve"], torchserve_warmup, out["torchserve"], log)
                    out["images"][name] = _measure_image(
                        image, loaded, endpoint, connection, runtime, module, resize, repeats, extra
                    )
                    _log_image(name, out["images"][name], log)
            # TorchServe is stopped (its JVM idle no more) before the component micro-benchmarks.
            out["components"] = {
                name: component_costs(image, module, component_iterations) for name, image in images.items()
            }
    return out


def _runtime_client(endpoint: Any) -> Any:
    with patched_environ(endpoint.client_environment()):
        import boto3

        return boto3.client("sagemaker-runtime")


def _start_torchserve(
    model_dir: Path, threads: int, wanted: bool, stack: contextlib.ExitStack, log: Callable[[str], None]
) -> dict[str, Any]:
    """The TorchServe paths' call factories (image -> call) and ``facts`` about the server, or a note.

    One worker with ``threads`` intra-op threads (OMP_NUM_THREADS): the in-process endpoint runs the
    forward pass on one thread of this process with the same pool, so the comparison is of servers,
    not of worker layouts.
    """
    from localdev.check_artifact import serving_stack_available
    from localdev.local_endpoint import LocalEndpoint

    if not wanted:
        return {"facts": {"skipped": "not requested (torchserve=False)"}}
    if not serving_stack_available():
        note = (
            "the serving stack is not installed here (requirements-serving.txt and Java 17+, see "
            "localdev.check_artifact.serving_stack_available): TorchServe paths not measured"
        )
        log(f"  note: {note}")
        return {"facts": {"skipped": note}}
    environment = torchserve_environment(threads)
    started = time.perf_counter()
    try:
        endpoint = stack.enter_context(
            LocalEndpoint(
                str(model_dir),
                name=ENDPOINT_NAME,
                server="torchserve",
                environment=environment,
            )
        )
    except Exception as exc:  # the in-process paths are still worth having; the report says what failed
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        log(f"  TorchServe did not start, its paths are not measured: {error}")
        return {"facts": {"error": error}}
    start_seconds = time.perf_counter() - started
    description = endpoint.toolkit.describe_model()
    facts = {
        "workers": len(description.get("workers", [])),
        "threads_per_worker": threads,
        "start_seconds": round(start_seconds, 1),
        "environment": {
            key: environment[key] for key in ("SAGEMAKER_MODEL_SERVER_WORKERS", "OMP_NUM_THREADS")
        },
    }
    log(
        f"  TorchServe up in {start_seconds:.0f} s: {facts['workers']} worker(s) x {threads} thread(s) "
        f"on port {endpoint.toolkit.port}"
    )
    module = load_prediction_handler(endpoint.url, ENDPOINT_NAME)
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.toolkit.port, timeout=60)
    stack.callback(connection.close)
    return {
        "facts": facts,
        "torchserve": lambda image: _post_invocations(connection, image),
        "lambda_torchserve": lambda image: _lambda_call(
            module, function_url_event(image, "image/jpeg", top_k=5)
        ),
    }


def _warm_up(
    call: Callable[[], object], requests: int, facts: dict[str, Any], log: Callable[[str], None]
) -> None:
    """``requests`` untimed requests through TorchServe (its JIT warm-up, see TORCHSERVE_WARMUP_REQUESTS)."""
    started = time.perf_counter()
    for _ in range(requests):
        call()
    facts["warmup_requests"] = requests
    facts["warmup_seconds"] = round(time.perf_counter() - started, 1)
    log(f"  TorchServe warmed up with {requests} requests in {facts['warmup_seconds']:.0f} s")


def _post_invocations(connection: http.client.HTTPConnection, image: bytes) -> Callable[[], bytes]:
    """``POST /invocations`` on a kept-alive connection, as SageMaker's front calls the container."""

    def call() -> bytes:
        connection.request("POST", "/invocations", body=image, headers={"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(body[:200])
        return body

    return call


def _log_image(name: str, entry: dict[str, Any], log: Callable[[str], None]) -> None:
    ms, ratios = entry["ms"], entry["ratio_vs_bare"]
    text = (
        f"  {name}: bare {ms['bare']['median']:.1f} ms, lambda path {ms['lambda']['median']:.1f} ms, "
        f"ratio {ratios['lambda']['median']:.3f}"
    )
    if PRODUCTION_PATH in ms:
        added = entry["torchserve_added_ms"]["torchserve vs handlers"]
        text += (
            f"; torchserve {ms['torchserve']['median']:.1f} ms ({added['median']:+.2f} ms vs handlers), "
            f"lambda_torchserve {ms[PRODUCTION_PATH]['median']:.1f} ms, ratio "
            f"{ratios[PRODUCTION_PATH]['median']:.3f}"
        )
    log(text)


def _measure_image(
    image: bytes,
    loaded: Any,
    endpoint: Any,
    connection: http.client.HTTPConnection,
    runtime: Any,
    module: Any,
    resize: int,
    repeats: int,
    extra: dict[str, Callable[[], object]] | None = None,
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

    def boto() -> bytes:
        response = runtime.invoke_endpoint(
            EndpointName=ENDPOINT_NAME,
            ContentType="image/jpeg",
            Accept="application/json",
            CustomAttributes="top_k=5",
            Body=image,
        )
        return response["Body"].read()

    calls: dict[str, Callable[[], object]] = {
        "bare": bare,
        "handlers": handlers,
        "http": _post_invocations(connection, image),
        "boto3": boto,
        "lambda": _lambda_call(module, function_url_event(image, "image/jpeg", top_k=5)),
        **(extra or {}),
    }
    agree = check_top5(calls)
    samples = interleaved(calls, repeats=repeats, warmup=2)
    ms = {name: [s * 1000 for s in values] for name, values in samples.items()}
    entry: dict[str, Any] = {
        "bytes": len(image),
        "top5_agree": agree,
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
    if all(path in ms for path in TORCHSERVE_PATHS):
        entry["added_ms"].update(
            {
                "torchserve vs handlers (TorchServe frontend, worker IPC, toolkit)": _median_diff(
                    ms["torchserve"], ms["handlers"]
                ),
                "torchserve vs http (TorchServe vs the in-process HTTP server, both keep-alive)": (
                    _median_diff(ms["torchserve"], ms["http"])
                ),
                "lambda_torchserve vs torchserve (runtime front, boto3, Lambda handler)": _median_diff(
                    ms["lambda_torchserve"], ms["torchserve"]
                ),
                "lambda_torchserve vs lambda (what the real server adds end to end)": _median_diff(
                    ms["lambda_torchserve"], ms["lambda"]
                ),
                "lambda_torchserve vs bare (everything, production path)": _median_diff(
                    ms["lambda_torchserve"], ms["bare"]
                ),
            }
        )
        entry.update(torchserve_comparison(samples))
    return entry


def torchserve_comparison(samples: dict[str, list[float]]) -> dict[str, Any]:
    """What TorchServe adds over the in-process server, per repeat: ms (median, p10, p90) and ratio."""
    added: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for label, real, emulated in TORCHSERVE_COMPARISONS:
        diffs = [1000 * (a - b) for a, b in zip(samples[real], samples[emulated], strict=True)]
        added[label] = {
            **Stats.of(diffs).as_dict(),
            "p10": percentile(diffs, 10),
            "p90": percentile(diffs, 90),
        }
        ratios[label] = ratio_stats(samples[real], samples[emulated]).as_dict()
    return {"torchserve_added_ms": added, "torchserve_ratio": ratios}


def top5_indices(answer: object) -> list[int]:
    """The class indices of a path's answer: bare's list, a response body, or a Lambda response."""
    if isinstance(answer, list):
        return [int(index) for index in answer]
    if isinstance(answer, dict):
        answer = answer["body"]
    body = json.loads(answer)  # type: ignore[arg-type]
    return [int(prediction["index"]) for prediction in body["predictions"]]


def check_top5(calls: dict[str, Callable[[], object]]) -> list[str]:
    """Call each path once; every one must answer ``bare``'s top-5 (same indices, same order)."""
    expected = top5_indices(calls["bare"]())
    for name, call in calls.items():
        got = top5_indices(call())
        if got != expected:
            raise RuntimeError(f"path {name!r} answered top-5 {got}, bare {expected}")
    return list(calls)


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
    """The judged ratio vs bare: the production path's when measured, else the in-process one's."""
    entry = result["images"][image]
    return entry["ratio_vs_bare"][judged_path(entry)]
