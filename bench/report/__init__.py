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
from .pricing import IDLE_COST_TITLE, cost_section, idle_cost_subsection
from .serving import diagnosis, serving_section, torchserve_adds, torchserve_setup
from .summary import FIXES, decisions_section
from .text import NOT_MEASURED_GPU, f1, f2, mmm, table
from .training import loader_section, training_section

__all__ = [
    "FIXES",
    "IDLE_COST_TITLE",
    "NOT_MEASURED_GPU",
    "cost_section",
    "decisions_section",
    "diagnosis",
    "f1",
    "f2",
    "header",
    "idle_cost_subsection",
    "inference_section",
    "lambda_blockers",
    "lambda_section",
    "loader_section",
    "mmm",
    "multi_image_section",
    "preprocess_section",
    "render",
    "serving_section",
    "table",
    "torchserve_adds",
    "torchserve_setup",
    "training_section",
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
