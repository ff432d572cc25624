"""A bounded concurrent load test: 8 clients x 50 requests against the local endpoint through boto3."""

from __future__ import annotations

import statistics
import threading
import time

import boto3
import pytest
import sample_images as images
from botocore.config import Config
from serving_helpers import ENDPOINT_NAME

CLIENTS = 8
REQUESTS_PER_CLIENT = 50


@pytest.mark.slow
def test_concurrent_clients_get_answers_without_errors(endpoint, capsys):
    env = endpoint.client_environment()
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    # No retries: an error must show up as an error, not be hidden behind a second attempt.
    config = Config(max_pool_connections=CLIENTS, retries={"mode": "standard", "total_max_attempts": 1})
    client = session.client("sagemaker-runtime", endpoint_url=endpoint.url, config=config)
    bodies = [images.jpeg(96 + 16 * i, 80) for i in range(4)] + [images.png_rgba(), images.webp()]
    types = ["image/jpeg"] * 4 + ["image/png", "image/webp"]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def run_client(number: int) -> None:
        start.wait()
        for request in range(REQUESTS_PER_CLIENT):
            choice = (number + request) % len(bodies)
            began = time.perf_counter()
            try:
                response = client.invoke_endpoint(
                    EndpointName=ENDPOINT_NAME,
                    ContentType=types[choice],
                    Body=bodies[choice],
                    CustomAttributes="top_k=3",
                )
                answer = response["Body"].read()
                assert b'"predictions"' in answer, answer[:200]
            except Exception as exc:  # counted, then reported all at once
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            with lock:
                latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=run_client, args=(number,)) for number in range(CLIENTS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    wall = time.perf_counter() - began

    assert not errors, errors[:5]
    assert len(latencies) == CLIENTS * REQUESTS_PER_CLIENT
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(0.99 * len(ordered)) - 1] * 1000
    with capsys.disabled():  # shown in every run, not only when the test fails
        print(
            f"\nload: {CLIENTS} clients x {REQUESTS_PER_CLIENT} requests, 0 errors, "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {ordered[-1] * 1000:.1f} ms, "
            f"{len(ordered) / wall:.1f} req/s over {wall:.1f} s"
        )
