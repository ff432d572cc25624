"""docs/benchmarks.md from the results dict: machine header, one section per benchmark, decisions.

One module per section; every verdict a section states (a target met or missed, a change to apply or
not) comes from :mod:`bench.decisions`, and every number from the results passed in or from the dated
constants of :mod:`bench.cost` and :mod:`bench.decisions`.
"""

from __future__ import annotations

from typing import Any

from .batching import multi_image_section
from .head import header
from .inference import inference_section
from .lambda_handler import lambda_blockers, lambda_section
from .preprocess import preprocess_section
from .pricing import cost_section
from .serving import diagnosis, serving_section
from .summary import decisions_section
from .training import loader_section, training_section

# What callers outside the package use (the runner, bench/config_sync, tests); the rest is per section.
__all__ = [
    "cost_section",
    "decisions_section",
    "diagnosis",
    "lambda_blockers",
    "lambda_section",
    "loader_section",
    "multi_image_section",
    "render",
    "serving_section",
]


def render(results: dict[str, Any], decisions: dict[str, Any]) -> str:
    """The whole document; ``decisions`` is :func:`bench.decisions.derive` of ``results``."""
    serving_arch = results.get("serving", {}).get("arch", "resnet50")
    sections = [header(results)]
    if "inference" in results:
        sections.append(inference_section(results["inference"]))
    if "preprocess" in results:
        sections.append(preprocess_section(results["preprocess"]))
    if "serving" in results:
        sections.append(serving_section(results["serving"], results.get("lambda")))
    if "lambda" in results:
        sections.append(lambda_section(results["lambda"]))
    if "training" in results:
        sections.append(training_section(results["training"]))
    if "loader" in results:
        sections.append(loader_section(results["loader"]))
    capacity = results.get("serving", {}).get("capacity", {}).get("by_arch", {}).get(serving_arch)
    sections.append(multi_image_section(results.get("inference", {}), serving_arch, capacity))
    sections.append(cost_section(decisions))
    sections.append(decisions_section(results, decisions))
    return "\n\n".join(sections) + "\n"
