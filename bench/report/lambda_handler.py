"""## Lambda: cold import and warm per-request overhead of the handler, against their targets; the blockers
paragraph the Decisions section prints."""

from __future__ import annotations

from typing import Any

from .. import cost, decisions
from ..lambda_overhead import COLD_TARGET_MS, WARM_TARGET_MS
from .text import f2, failed, mmm, table, verdict

TITLE = "## Lambda: cold import and warm per-request overhead"


def stage_lambda_memory_mb() -> int | None:
    """The smallest ``lambda_memory_mb`` of the stages in cdk.json (the smallest CPU share), or None
    where the config does not load."""
    from stacks.model_environment import stage_config_from_cdk_json

    try:
        return min(stage_config_from_cdk_json(stage).lambda_memory_mb for stage in ("dev", "prod"))
    except ValueError:
        return None


def lambda_section(result: dict[str, Any], memory_mb: int | None = None) -> str:
    """The section; ``memory_mb`` is the function's memory (default: :func:`stage_lambda_memory_mb`)."""
    if text := failed(result):
        return f"{TITLE}\n\n{text}"
    judged = decisions.lambda_verdicts(
        result, COLD_TARGET_MS, WARM_TARGET_MS, memory_mb or stage_lambda_memory_mb()
    )
    cold, warm = result["cold"], result["warm"]
    split = cold["split_ms"]
    rows = [
        [
            "`import handler` (fresh interpreter)",
            mmm(cold["import_handler_ms"]),
            f"<= {judged.cold.target:g}",
            verdict(judged.cold),
        ],
        ["of which `import botocore.session`", mmm(split["import_botocore"]), "", ""],
        ['of which `create_client("sagemaker-runtime")`', mmm(split["client"]), "", ""],
        ["of which the handler's own modules", mmm(split["handler_rest"]), "", ""],
        ["for comparison: `import boto3`", mmm(cold["boto3_ms"]["import_boto3"]), "", ""],
        ['for comparison: `boto3.client("sagemaker-runtime")`', mmm(cold["boto3_ms"]["client"]), "", ""],
        [
            "interpreter start-up (CPU time, not in the above)",
            mmm(cold["interpreter_startup_cpu_ms"]),
            "",
            "",
        ],
    ]
    imports = table(
        ["package", "import self-time ms"],
        [
            [
                "handler (module body: settings, the botocore client)"
                if entry["package"] == "handler"
                else entry["package"],
                f2(entry["self_ms"]),
            ]
            for entry in cold["top_imports"]
        ],
    )
    warm_rows = []
    for image, entry in warm["images"].items():
        for label, stats in entry["ms"].items():
            warm_rows.append(
                [
                    f"{image} ({entry['bytes'] / 1e3:,.0f} KB)",
                    label,
                    mmm(stats, f2),
                    str(entry["iterations"]),
                    verdict(judged.warm[image][label]),
                ]
            )
    return "\n\n".join(
        [
            TITLE,
            f"Cold: `import handler` timed inside {cold['runs']} fresh interpreters (cwd `lambda/`, "
            ".pyc present, "
            "as in a deployment package); the target applies to the min (a quiet machine), median and "
            "max show "
            "the noise. Warm: `handler.handler(event, None)` in a loop with the endpoint call stubbed "
            "(`stub client`: the module's client replaced by a canned answer; `botocore Stubber`: the real "
            "client with only the HTTP send short-circuited, so botocore's validation and serialization "
            "count).",
            table(["measure", "ms", "target ms", "verdict"], rows),
            cpu_share_caveat(judged, warm["images"]),
            "Import self-time by package (`python -X importtime -c 'import handler'`):",
            imports,
            table(
                [
                    "image",
                    "endpoint call replaced by",
                    "ms per request",
                    "iterations",
                    f"vs <= {WARM_TARGET_MS:g} ms",
                ],
                warm_rows,
            ),
        ]
    )


def cpu_share_caveat(judged: decisions.LambdaVerdicts, images: dict[str, Any]) -> str:
    """What Lambda's CPU share makes of this host's single-core numbers."""
    per_vcpu = f'{cost.LAMBDA_MB_PER_VCPU:,} MB = one vCPU, AWS Lambda docs, "Memory and computing power"'
    start = (
        "Caveat for Lambda: these numbers are on one full core of this host. Lambda gives a function CPU "
        f"in proportion to its memory ({per_vcpu}), so "
    )
    share = judged.cpu_share
    if share is None:
        return (
            start + f"expect the CPU-bound times below (cold import, base64) to grow by "
            f"{cost.LAMBDA_MB_PER_VCPU} / the function's memory in MB (the stage config did not load)."
        )
    limit = judged.warm_limit_scaled
    within = (
        f"up to the {limit} image ({images[limit]['bytes'] / 1e3:,.0f} KB)"
        if limit
        else "for none of the measured images"
    )
    return (
        start + f"at the stage config's {share.memory_mb} MB expect roughly {share.mb_per_vcpu} / "
        f"{share.memory_mb} = {share.slowdown:.1f}x the CPU-bound times below (cold import, base64): the "
        "cold path is what provisioned concurrency or SnapStart hides; scaled so, the warm overhead "
        f"(`{decisions.WARM_JUDGED_CALL}`) meets the <= {WARM_TARGET_MS:g} ms target {within}."
    )


def lambda_blockers(lam: dict[str, Any], serving: dict[str, Any]) -> str:
    """Where each Lambda target is missed, what the time is spent on (measured, not the handler's code)."""
    split = lam["cold"]["split_ms"]
    library = split["import_botocore"]["median"] + split["client"]["median"]
    text = [
        "**Blockers.** Cold: `import botocore.session` + creating the client take "
        f"{library:.0f} ms (median) and the handler's own modules "
        f"{split['handler_rest']['median']:.0f} ms: the time is botocore's (module imports, then the "
        "service model and endpoint rules it reads from disk when a client is created). The handler "
        "already skips boto3 (the comparison rows) and creates its client at module level, so "
        "provisioned concurrency runs all of it before the first request."
    ]
    images = lam["warm"]["images"]
    phone_warm = images.get("phone")
    # Timed in the same loop as the handler where the run has it; the serving section's number comes
    # from another part of the run (other load), so it can even exceed the handler's total.
    b64 = (phone_warm or {}).get("b64decode_ms")
    where = "timed in the same loop"
    if b64 is None:
        b64 = serving.get("components", {}).get("phone", {}).get("lambda: base64.b64decode alone")
        where = "serving components table"
    if phone_warm and b64:
        total = phone_warm["ms"][decisions.WARM_JUDGED_CALL]["median"]
        small = images.get("small")
        mb = phone_warm["bytes"] / 1e6
        share = (
            "most of the cost"
            if decisions.is_most_of(b64["median"], total)
            else f"{b64['median'] / total:.0%} of the cost"
        )
        limit = decisions.warm_limit(images, WARM_TARGET_MS)
        holds = f"for uploads up to the {limit} image" if limit else "for none of the measured uploads"
        text.append(
            f"Warm, phone photo ({total:.1f} ms): `base64.b64decode` of such a body alone takes "
            f"{b64['median']:.1f} ms ({where}, {b64['median'] / mb:.1f} ms per MB of "
            f"image), so the decode is {share}"
            + (
                f"; the handler's own work is what the small image shows, "
                f"{small['ms'][decisions.WARM_JUDGED_CALL]['median']:.2f} ms"
                if small
                else ""
            )
            + ". A Function URL delivers a binary body base64-encoded, so the decode is the floor; the "
            f"{WARM_TARGET_MS:g} ms target holds {holds}, which is why clients should downscale photos "
            "before sending (fix 2)."
        )
    return " ".join(text)
