"""Number formats and Markdown pieces every section uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

NOT_MEASURED_GPU = "not measured in this run (no GPU lent to this session)"


def f1(value: float) -> str:
    return f"{value:,.1f}"


def f2(value: float) -> str:
    return f"{value:,.2f}"


def r3(value: float) -> str:
    return f"{value:.3f}"


def count(value: float) -> str:
    return f"{value:,.0f}"


def mmm(stats: dict[str, float], fmt: Callable[[float], str] = f1) -> str:
    """``median (min-max)``."""
    return f"{fmt(stats['median'])} ({fmt(stats['min'])}-{fmt(stats['max'])})"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(judged: Any) -> str:
    """A :class:`bench.decisions.Verdict` as the tables print it."""
    return "met" if judged.met else f"missed by {judged.excess:.1f} ms"


def failed(section: dict[str, Any]) -> str | None:
    """The line that stands for a section whose benchmark raised."""
    return f"**Not measured: the benchmark failed:** `{section['error']}`" if "error" in section else None
