"""Timing primitives: interleaved repeats, percentiles, and min/median/max summaries.

Every comparison in the suite is taken side by side: the variants of one measurement run in
round-robin order inside each repeat, so a burst of load from another process hits all of them
alike and the ratios stay meaningful even when the absolute numbers are noisy.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Stats:
    """min / median / max of a list of samples (seconds, images/s, ... as the caller says)."""

    min: float
    median: float
    max: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> Stats:
        if not samples:
            raise ValueError("no samples")
        return cls(min(samples), statistics.median(samples), max(samples), len(samples))

    def scaled(self, factor: float) -> Stats:
        """The same statistics in other units (factor > 0 keeps the order: s -> ms is 1000)."""
        return Stats(self.min * factor, self.median * factor, self.max * factor, self.n)

    def as_dict(self) -> dict[str, float]:
        return {"min": self.min, "median": self.median, "max": self.max, "n": self.n}


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's default)."""
    if not samples:
        raise ValueError("no samples")
    if not 0 <= q <= 100:
        raise ValueError("q must be in [0, 100]")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def interleaved(
    variants: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each variant, ``repeats`` samples each, variants in round-robin order.

    ``warmup`` untimed calls of every variant come first (allocator, oneDNN primitive caches,
    lazy imports). The automatic garbage collector is paused while timing so that a collection
    does not land on one variant only; it runs between rounds instead.
    """
    for _ in range(warmup):
        for call in variants.values():
            call()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for index in range(repeats):
            for name, call in variants.items():
                started = time.perf_counter()
                call()
                samples[name].append(time.perf_counter() - started)
            if index % 10 == 9:  # outside the timed calls; not every round (a full collection costs ms)
                gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def ratio_stats(numerator: list[float], denominator: list[float]) -> Stats:
    """Per-repeat ratios of two interleaved sample lists (repeat i against repeat i)."""
    if len(numerator) != len(denominator):
        raise ValueError("ratios need samples from the same repeats")
    return Stats.of([a / b for a, b in zip(numerator, denominator, strict=True)])
