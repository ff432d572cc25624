"""bench.report: the comparisons the document states are the ones the numbers support, every verdict the
one bench.decisions returns, and the committed document what the saved results render."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from bench import decisions, report
from bench.report import inference as inference_report

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_document_is_what_the_saved_results_render():
    """docs/benchmarks.md is generated (`python -m bench --render-only docs/benchmarks.json`): a hand edit,
    or a report change without a re-render, shows here."""
    results = json.loads((REPO_ROOT / "docs" / "benchmarks.json").read_text())["results"]
    rendered = report.render(results, decisions.derive(results))
    assert rendered == (REPO_ROOT / "docs" / "benchmarks.md").read_text(), (
        "docs/benchmarks.md is stale: .venv/bin/python -m bench --render-only docs/benchmarks.json"
    )


def _variant(p50_ms: float, b8_img_s: float) -> dict:
    return {
        "latency_ms": {"p50": p50_ms, "p99": p50_ms, "min": p50_ms, "max": p50_ms, "n": 20},
        "throughput": {"8": {"min": b8_img_s, "median": b8_img_s, "max": b8_img_s, "n": 3}},
    }


def _inference() -> dict:
    return {
        "models": {
            "resnet50": {
                "variants": {
                    "eager": _variant(50.0, 15.0),
                    "channels_last": _variant(60.0, 30.0),
                    "bf16 channels_last": _variant(20.0, 90.0),  # not what the endpoint serves
                }
            }
        }
    }


def test_multi_image_compares_each_batch_size_in_its_fastest_layout():
    # eager is fastest at batch 1 (20 img/s), channels_last at batch 8 (30 img/s): batching wins 1.5x,
    # though eager alone at batch 8 (15 img/s) would say it loses.
    text = report.multi_image_section(_inference(), "resnet50")
    assert "batch 1 20.0 img/s (eager), batch 8 30.0 img/s (channels_last), 1.50x per image" in text
    assert "**no multi-image requests**" in text


@pytest.mark.parametrize(
    ("two_worker_rps", "claim"),
    [
        (16.0, "on CPU the same cores are better used by one single-image worker per core"),
        (12.0, "on CPU batching gains more per image here than more workers do"),
    ],
)
def test_the_multi_image_cpu_argument_is_the_one_the_capacity_supports(two_worker_rps, claim):
    # Batching gains 1.50x per image; two single-threaded workers gain 1.60x or 1.20x over one.
    capacity = {
        "layouts": [
            {"workers": 1, "threads": 2, "rps": 10.0},
            {"workers": 2, "threads": 1, "rps": two_worker_rps},
        ]
    }
    text = report.multi_image_section(_inference(), "resnet50", capacity)
    assert claim in text
    assert "better used by one single-image worker" not in report.multi_image_section(
        _inference(), "resnet50"
    )


def test_advice_on_channels_last_follows_the_measured_gain():
    inference = _inference()
    serving = {"arch": "resnet50"}
    # channels_last is slower (50 vs 60 ms): no change to model_fn.
    text = report.decisions_section({"inference": inference, "serving": serving}, {})
    assert "6. channels_last on CPU: 0.83x for `resnet50` at batch 1 here, no reason to change" in text
    assert "7. bf16 on CPU (informational, not applied): 2.50x eager fp32" in text
    inference["models"]["resnet50"]["variants"]["channels_last"] = _variant(40.0, 30.0)
    text = report.decisions_section({"inference": inference, "serving": serving}, {})
    assert "use channels_last on CPU as well, not only on CUDA: `resnet50` runs 1.25x faster" in text


def test_the_compile_note_quotes_only_what_the_run_measured():
    result = {"compile": False, "models": {}}
    note = inference_report.compile_note(result)
    assert "judges neither" in note
    # No measured figure from another run: the only number is the bar itself.
    figures = re.findall(r"\d+(?:\.\d+)?", note.replace("resnet50", "").replace("batch 1", ""))
    assert figures == [f"{decisions.COMPILE_MIN_GAIN:g}"]
    model = {
        "variants": {
            "eager": _variant(60.0, 10.0),
            "compile": _variant(40.0, 10.0),
            "export": _variant(55.0, 10.0),
        },
        "compile_seconds": {"compile": 48.0, "export": 17.0},
    }
    note = inference_report.compile_note({"compile": True, "models": {"resnet50": model}})
    assert "resnet50 48 s (compile, three shapes) / 17 s (export)" in note
    assert "resnet50 `compile` 1.50x (worth serving), resnet50 `export` 1.09x;" in note


def _stats(median: float, low: float | None = None) -> dict:
    return {"min": median if low is None else low, "median": median, "max": median, "n": 10}


def test_lambda_blockers_compare_the_base64_decode_timed_beside_the_handler():
    split = {"import_botocore": _stats(100.0), "client": _stats(45.0), "handler_rest": _stats(1.5)}
    phone = {"bytes": 2_000_000, "ms": {"stub client": _stats(6.0)}, "b64decode_ms": _stats(5.0)}
    lam = {"cold": {"split_ms": split}, "warm": {"images": {"phone": phone}}}
    # The serving section ran at another time, under other load: its 7 ms must not be set against 6 ms.
    serving = {"components": {"phone": {"lambda: base64.b64decode alone": _stats(7.0)}}}
    text = report.lambda_blockers(lam, serving)
    assert "alone takes 5.0 ms (timed in the same loop, 2.5 ms per MB" in text
    assert "so the decode is most of the cost" in text
    assert "the 2 ms target holds for none of the measured uploads" in text
    del phone["b64decode_ms"]  # a results file from before the field existed
    assert "alone takes 7.0 ms (serving components table" in report.lambda_blockers(lam, serving)


def test_lambda_blockers_state_the_warm_limit_and_the_decode_share_the_numbers_give():
    split = {"import_botocore": _stats(100.0), "client": _stats(45.0), "handler_rest": _stats(1.5)}
    images = {
        "small": {"bytes": 70_000, "ms": {"stub client": _stats(0.3)}},
        "medium": {"bytes": 370_000, "ms": {"stub client": _stats(1.9)}},
        "phone": {"bytes": 2_000_000, "ms": {"stub client": _stats(8.0)}, "b64decode_ms": _stats(3.0)},
    }
    lam = {"cold": {"split_ms": split}, "warm": {"images": images}}
    text = report.lambda_blockers(lam, {})
    assert "the decode is 38% of the cost; the handler's own work is what the small image shows" in text
    assert "the 2 ms target holds for uploads up to the medium image" in text
    images["medium"]["ms"]["stub client"] = _stats(2.1)
    assert "holds for uploads up to the small image" in report.lambda_blockers(lam, {})


def _lambda_result(cold_min: float) -> dict:
    timed = _stats(10.0)
    return {
        "cold": {
            "runs": 10,
            "import_handler_ms": _stats(cold_min + 10, low=cold_min),
            "split_ms": {"import_botocore": timed, "client": timed, "handler_rest": timed},
            "boto3_ms": {"import_boto3": timed, "client": timed},
            "interpreter_startup_cpu_ms": timed,
            "top_imports": [{"package": "handler", "self_ms": 50.0}],
        },
        "warm": {
            "images": {
                "small": {"bytes": 70_000, "iterations": 300, "ms": {"stub client": _stats(0.5)}},
                "medium": {"bytes": 370_000, "iterations": 100, "ms": {"stub client": _stats(1.5)}},
            }
        },
    }


def test_the_lambda_table_verdicts_and_caveat_follow_the_targets_and_the_memory():
    from bench.lambda_overhead import COLD_TARGET_MS

    text = report.lambda_section(_lambda_result(COLD_TARGET_MS), memory_mb=512)
    assert f"| 160.0 ({COLD_TARGET_MS:.1f}-160.0) | <= {COLD_TARGET_MS:g} | met |" in text
    assert "| medium (370 KB) | stub client | 1.50 (1.50-1.50) | 100 | met |" in text
    assert "1769 / 512 = 3.5x" in text and "meets the <= 2 ms target up to the small image (70 KB)" in text
    text = report.lambda_section(_lambda_result(COLD_TARGET_MS + 3.6), memory_mb=256)
    assert "| missed by 3.6 ms |" in text
    assert "1769 / 256 = 6.9x" in text and "meets the <= 2 ms target for none of the measured images" in text


def _loader(step: float) -> dict:
    rates = {"decode": _stats(488.0), "float path": _stats(214.0), "uint8 path": _stats(284.0)}
    return {
        "sets": {"original": {"images": 32, "pixels": "500x375", "mean_kb": 123.0}},
        "target": {"images_per_sec": 2470, "source": "NVIDIA", "vcpus_per_gpu_p4d": 12},
        "cores_needed": {"original/float path": 12, "original/uint8 path": 9},
        "per_worker": {"original": {"images_per_sec": rates, "speedup_uint8_vs_float": _stats(1.3)}},
        "loader_vs_step": {
            "arch": "resnet18",
            "batch_size": 8,
            "loader_workers": 1,
            "threads": 2,
            "images_per_sec": {"original": {"data loader alone": _stats(145.0), "full step": _stats(step)}},
        },
        "bytes_per_sample": {"float path": 602_112, "uint8 path": 150_528},
        "eval_difference_prepared": {"mean_abs": 2.66, "max_abs": 17.0},
        "short_side": 256,
        "quality": 93,
        "subsampling": "4:4:4",
        "size_ratio_prepared": 0.37,
        "image_size": 224,
        "min_crop_scale": 0.08,
        "repeats": 15,
        "date_utc": "2026-12-02 01:02 UTC",
        "load_average": [1.31, 1.43],
        "usable_cpus": 2,
    }


def test_the_loader_section_names_the_bottleneck_the_rates_show():
    text = report.loader_section(_loader(step=6.7))
    assert (
        "On a CPU the step is the bottleneck; on a GPU the loader is, which the cores column sizes." in text
    )
    assert "602 KB per sample on the float path, 151 KB on the uint8 path: a quarter through" in text
    text = report.loader_section(_loader(step=200.0))
    assert "On this CPU the loader is the bottleneck for at least one image set" in text


def test_the_diagnosis_calls_a_copy_negligible_only_below_its_share():
    phone = {
        "bytes": 2_300_000,
        "ms": {"bare": _stats(100.0)},
        "added_ms": {
            "lambda vs bare (everything)": 8.0,
            "http vs handlers (HTTP server, loopback transfer)": 0.5,
            "boto3 vs http (botocore, SigV4, service error parsing)": 2.0,
            "handlers vs bare (input_fn/predict_fn/output_fn, JSON)": 0.8,
        },
    }
    copy_row = "endpoint: bytes(bytearray body) in input_fn"
    result = {"images": {"phone": phone}, "components": {"phone": {copy_row: _stats(0.24)}}}
    assert "0.24 ms, negligible." in report.diagnosis(result)
    slower = copy.deepcopy(result)
    slower["components"]["phone"][copy_row] = _stats(2.0)
    assert "2.00 ms, 2.0% of the bare prediction." in report.diagnosis(slower)
