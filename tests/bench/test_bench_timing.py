"""Timing helpers: percentiles, min/median/max, round-robin interleaving, per-repeat ratios."""

from __future__ import annotations

import numpy as np
import pytest

from bench.lambda_overhead import top_imports
from bench.timing import Stats, interleaved, percentile, ratio_stats


@pytest.mark.parametrize("q", [0, 25, 50, 90, 99, 100])
def test_percentile_matches_numpy_linear_interpolation(q):
    samples = [5.0, 1.0, 3.0, 9.0, 7.0, 2.0, 8.0]
    assert percentile(samples, q) == pytest.approx(float(np.percentile(samples, q)))


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_stats_of_and_scaled():
    stats = Stats.of([3.0, 1.0, 2.0, 10.0])
    assert (stats.min, stats.median, stats.max, stats.n) == (1.0, 2.5, 10.0, 4)
    assert stats.scaled(1000).as_dict() == {"min": 1000.0, "median": 2500.0, "max": 10000.0, "n": 4}


def test_interleaved_runs_variants_round_robin_after_warmup():
    calls: list[str] = []
    samples = interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1
    )
    assert calls == ["a", "b"] * 4  # 1 warm-up round + 3 timed rounds, alternating
    assert {name: len(values) for name, values in samples.items()} == {"a": 3, "b": 3}
    assert all(value >= 0 for values in samples.values() for value in values)


def test_ratio_stats_pairs_repeats():
    stats = ratio_stats([2.0, 3.0, 4.0], [1.0, 1.0, 2.0])
    assert (stats.min, stats.median, stats.max) == (2.0, 2.0, 3.0)
    with pytest.raises(ValueError):
        ratio_stats([1.0], [1.0, 2.0])


def test_top_imports_sums_self_time_per_top_level_package():
    stderr = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       100 |        100 |   botocore.compat",
            "import time:       300 |        300 |     urllib3.util",
            "import time:      2000 |       2400 | botocore",
            "import time:       500 |       2900 | boto3",
            "noise line",
        ]
    )
    ranked = top_imports(stderr, limit=2)
    assert ranked == [{"package": "botocore", "self_ms": 2.1}, {"package": "boto3", "self_ms": 0.5}]
