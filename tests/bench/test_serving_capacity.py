"""The worker-layout capacity comparison: layouts take turns, and each is summarised over its rounds."""

from __future__ import annotations

import pytest

from bench import serving_overhead


def test_layouts_take_turns_so_load_drift_lands_on_both_sides(monkeypatch):
    calls = []
    # The machine gets busier with every run: a layout measured only at the end would look slower.
    rps_by_layout = {(1, 2): 10.0, (2, 1): 12.0}

    def fake_capacity(arch, image, workers, threads, requests_per_worker):
        calls.append((workers, threads))
        drift = 1.0 - 0.05 * len(calls)
        return {
            "workers": workers,
            "threads": threads,
            "requests": workers * requests_per_worker,
            "rps": rps_by_layout[(workers, threads)] * drift,
            "latency_ms_p50": 100.0,
            "latency_ms_p99": 120.0,
        }

    monkeypatch.setattr(serving_overhead, "worker_capacity", fake_capacity)
    result = serving_overhead.capacity("resnet50", b"", cpus=2, requests=8, rounds=4, log=lambda _: None)

    assert calls == [(1, 2), (2, 1), (2, 1), (1, 2), (1, 2), (2, 1), (2, 1), (1, 2)]
    single, per_core = result["layouts"]
    # Each layout's runs sit at the same mean position in the sequence (positions 1,4,5,8 and 2,3,6,7),
    # so the drift cancels and the ratio is the true 1.2.
    assert per_core["rps"] / single["rps"] == pytest.approx(1.2, rel=0.02)
    assert result["best"] is per_core
    assert per_core["requests"] == 4 * 8 and per_core["rps_min"] < per_core["rps"] < per_core["rps_max"]


def test_one_core_has_one_layout(monkeypatch):
    calls = []

    def fake_capacity(arch, image, workers, threads, requests_per_worker):
        calls.append((workers, threads))
        return {
            "workers": 1,
            "threads": 1,
            "requests": 2,
            "rps": 5.0,
            "latency_ms_p50": 1,
            "latency_ms_p99": 2,
        }

    monkeypatch.setattr(serving_overhead, "worker_capacity", fake_capacity)
    result = serving_overhead.capacity("resnet50", b"", cpus=1, requests=4, rounds=2, log=lambda _: None)
    assert calls == [(1, 1), (1, 1)] and len(result["layouts"]) == 1 and result["best"]["rps"] == 5.0
