"""## Serving path overhead: each hop from the Lambda handler to the model, the target ratio, capacity by
worker layout, and the diagnosis of where the time goes."""

from __future__ import annotations

from typing import Any

from .. import decisions
from ..decisions import PRODUCTION_PATH
from ..serving_overhead import WHITESPACE_REMOVAL
from .text import f1, f2, failed, mmm, r3, table

TITLE = "## Serving path overhead: Lambda handler -> boto3 -> local endpoint -> model"
EVERYTHING = "lambda vs bare (everything)"


def serving_section(result: dict[str, Any], lambda_result: dict[str, Any] | None = None) -> str:
    """The section; ``lambda_result`` is accepted for the caller's symmetry and not read."""
    if text := failed(result):
        return f"{TITLE}\n\n{text}"
    rows = []
    for image, entry in result["images"].items():
        for path, stats in entry["ms"].items():
            rows.append([image, path, mmm(stats), f1(stats["p99"]), mmm(entry["ratio_vs_bare"][path], r3)])
    added = []
    for image, entry in result["images"].items():
        for label, value in entry["added_ms"].items():
            added.append([image, label, f"{value:+.2f}"])
    components = []
    for image, entries in result.get("components", {}).items():
        for label, stats in entries.items():
            components.append([image, label, mmm(stats, f2)])
    capacity_rows = []
    for arch, cap in result.get("capacity", {}).get("by_arch", {}).items():
        for layout in cap["layouts"]:
            capacity_rows.append(
                [
                    arch,
                    f"{layout['workers']} x {layout['threads']}",
                    f1(layout["rps"])
                    + (f" ({f1(layout['rps_min'])}-{f1(layout['rps_max'])})" if "rps_min" in layout else ""),
                    f1(layout["latency_ms_p50"]),
                    f1(layout["latency_ms_p99"]),
                    str(layout["requests"]),
                ]
            )
    parts = [
        TITLE,
        f"Default backbone `{result['arch']}` packed by `training.artifact` (random weights), served by "
        "`localdev.local_endpoint.LocalEndpoint` in this process (real HTTP on loopback, keep-alive), "
        "called through `lambda/handler.py` with a Function URL event and its real botocore client. "
        f"{result['repeats']} interleaved repeats per path; `bare` is draft decode + preset + forward + "
        f"top-5 in straight calls, on the main thread, with the same {result['threads']} torch threads.",
        torchserve_setup(result),
        table(["image", "path", "ms", "p99 ms", "ratio vs bare"], rows),
        verdict_line(decisions.serving_verdict(result)),
        "What each hop adds (median of per-repeat differences, ms; negative values are noise):",
        table(["image", "hop", "added ms"], added),
    ]
    if adds := torchserve_adds(result):
        parts.append(adds)
    parts += [
        "Per-request CPU work outside the model, timed alone:",
        table(["image", "work", "ms"], components),
    ]
    if capacity_rows:
        parts += [
            "Capacity of this host for the whole per-request work (draft decode + preset + forward of "
            "the phone "
            "photo), by TorchServe-style worker layout (processes x threads each), all processes busy "
            "at once; the layouts take turns (A B, B A, ...) and req/s is the median of the rounds "
            "(min-max):",
            table(["model", "workers x threads", "req/s", "p50 ms", "p99 ms", "requests"], capacity_rows),
            "Why the layout matters beyond this table: on shared cores a multi-threaded worker has a "
            "failure mode that a quiet run does not show. Every OpenMP parallel region waits for its "
            "slowest thread, so one descheduled thread stalls the whole forward pass; TorchServe's "
            "default of one worker per vCPU, each with a full-size thread pool, creates exactly that "
            "contention. Development runs of this benchmark while other test suites loaded the host "
            "showed it; their results are not saved, so their numbers are not quoted here.",
        ]
    parts += [diagnosis(result), "![serving path](img/bench-serving-path.png)"]
    return "\n\n".join(parts)


def torchserve_setup(result: dict[str, Any]) -> str:
    """How the TorchServe paths were served, or why the run has none."""
    facts = result.get("torchserve")
    if facts is None:
        return (
            "This run measured the in-process endpoint only (results from before the TorchServe paths): "
            "every path here runs the toolkit emulation, not the server production runs."
        )
    if "error" in facts:
        return f"**TorchServe paths not measured: the server did not start:** `{facts['error']}`"
    if "skipped" in facts:
        return f"**TorchServe paths not measured:** {facts['skipped']}."
    env = facts.get("environment", {})
    return (
        "`torchserve` and `lambda_torchserve` run against the same artifact served by the DLC's real stack "
        '(`server="torchserve"`: the SageMaker PyTorch toolkit starting TorchServe, dev\'s Model '
        f"environment with {facts['workers']} worker(s) x {facts['threads_per_worker']} intra-op "
        f"thread(s): `SAGEMAKER_MODEL_SERVER_WORKERS={env.get('SAGEMAKER_MODEL_SERVER_WORKERS', '?')}`, "
        f"`OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', '?')}`; up in {facts['start_seconds']:.0f} s), "
        "so that the difference to the in-process paths is the server, not a worker layout. "
        + _warmup(facts)
        + "`torchserve` posts to TorchServe's own `/invocations` on a kept-alive connection, as SageMaker's "
        "front calls the container; `lambda_torchserve` is the Lambda handler -> boto3 -> the local "
        "runtime front -> TorchServe, the path production runs (the local front opens a new loopback "
        "connection to TorchServe per request)." + _top5_agreement(result)
    )


def _warmup(facts: dict[str, Any]) -> str:
    if not facts.get("warmup_requests"):
        return ""
    return (
        f"{facts['warmup_requests']} untimed requests went through TorchServe first (its Java frontend's "
        "JIT warm-up, which a long-running endpoint is past). "
    )


def _top5_agreement(result: dict[str, Any]) -> str:
    checked = [set(entry.get("top5_agree", ())) for entry in result["images"].values()]
    if checked and all(PRODUCTION_PATH in paths and "torchserve" in paths for paths in checked):
        return " Before timing, every path answered the same top-5 as `bare` for every image."
    return ""


def verdict_line(judged: decisions.ServingVerdict) -> str:
    """The target ratio, judged on the production path when measured, else on the in-process one."""
    ratio = mmm(judged.ratio, r3)
    if judged.production:
        what = (
            f"the production path (`{judged.path}`: Lambda handler -> boto3 -> runtime front -> TorchServe) "
            f"costs {ratio}x the bare forward"
        )
    else:
        what = f"the whole in-process path (`{judged.path}`) costs {ratio}x the bare forward"
    aside = (
        f" The in-process `lambda` path costs {mmm(judged.inprocess_ratio, r3)}x."
        if judged.inprocess_ratio
        else ""
    )
    return (
        f"**Result: {what} for the {judged.image} photo (target <= {judged.verdict.target}x): "
        + ("target met.**" if judged.verdict.met else "target missed.**")
        + aside
    )


def torchserve_adds(result: dict[str, Any]) -> str | None:
    """What the real server adds over the emulation: per-repeat ms (median, p10-p90) and ratio."""
    rows = []
    for image, entry in result["images"].items():
        ratios = entry.get("torchserve_ratio", {})
        for label, added in entry.get("torchserve_added_ms", {}).items():
            ratio = ratios.get(label)
            rows.append(
                [
                    image,
                    label,
                    f"{added['median']:+.2f} ({added['p10']:+.2f} to {added['p90']:+.2f})",
                    mmm(ratio, r3) if ratio else "-",
                ]
            )
    if not rows:
        return None
    return "\n\n".join(
        [
            "What TorchServe adds over the in-process server (per-repeat differences and ratios, "
            "TorchServe path against the in-process path it replaces: `torchserve` vs `handlers` is "
            "TorchServe's frontend, the worker IPC and the toolkit's handler service; "
            "`lambda_torchserve` vs `lambda` is the same end to end). A negative value means the in-process "
            "path was the slower one in most repeats: on a busy host that is scheduling (TorchServe's worker "
            "is another process, with its own thread pool), not a saving:",
            table(["image", "comparison", "added ms, median (p10 to p90)", "ratio, median (min-max)"], rows),
        ]
    )


def diagnosis(result: dict[str, Any]) -> str:
    phone = result["images"].get("phone")
    small = result["images"].get("small")
    comp = result.get("components", {}).get("phone", {})
    lines = ["### Diagnosis"]
    if phone:
        added = phone["added_ms"]
        bare = phone["ms"]["bare"]["median"]
        lines.append(
            f"For the {phone['bytes'] / 1e6:.1f} MB phone photo the path adds {added[EVERYTHING]:+.1f} ms to "
            f"a {bare:.1f} ms bare prediction. The per-request work that scales with "
            "the upload size dominates the fixed costs:"
        )
        b64 = comp.get("lambda: base64.b64decode alone", {}).get("median")
        sha = comp.get("boto3: SigV4 payload SHA-256 of the body", {}).get("median")
        strip = comp.get(WHITESPACE_REMOVAL, {}).get("median")
        copy = comp.get("endpoint: bytes(bytearray body) in input_fn", {}).get("median")
        if b64 is not None:
            lines.append(
                f"- Lambda base64-decodes the body: {b64:.2f} ms (Function URLs deliver binary bodies "
                "as base64)."
            )
        if strip is not None:
            lines.append(
                f"- Removing whitespace from the base64 text (one ASCII copy, `bytes.translate`) costs "
                f"{strip:.2f} ms: `prediction_request._b64decode` does it only when the strict decode "
                "fails (fix 1)."
            )
        if sha is not None:
            lines.append(
                f"- botocore's SigV4 signs the payload: SHA-256 over the image, {sha:.2f} ms "
                "(sagemaker-runtime "
                "signs payloads over HTTPS too)."
            )
        if copy is not None:
            weight = (
                "negligible"
                if decisions.negligible(copy, bare)
                else f"{copy / bare:.1%} of the bare prediction"
            )
            lines.append(
                "- `input_fn`'s `bytes(...)` copies a `bytearray` body (TorchServe passes one): "
                f"{copy:.2f} ms, {weight}."
            )
        lines.append(
            "- HTTP server + loopback transfer (`http` vs `handlers`): "
            f"{added['http vs handlers (HTTP server, loopback transfer)']:+.2f} ms; "
            "botocore vs raw HTTP: "
            f"{added['boto3 vs http (botocore, SigV4, service error parsing)']:+.2f} ms; "
            "the handler functions vs bare calls: "
            f"{added['handlers vs bare (input_fn/predict_fn/output_fn, JSON)']:+.2f} ms."
        )
        real = phone.get("torchserve_added_ms", {})
        if "torchserve vs handlers" in real:
            served = real["torchserve vs handlers"]
            ratio = phone["torchserve_ratio"]["torchserve vs handlers"]["median"]
            line = (
                "- TorchServe in place of the in-process server (`torchserve` vs `handlers`): "
                f"{served['median']:+.2f} ms (p10 {served['p10']:+.2f}, p90 {served['p90']:+.2f}), "
                f"{ratio:.3f}x: the emulation does not run TorchServe's frontend, the frontend-to-worker "
                "socket or the toolkit's handler service"
            )
            if "lambda_torchserve vs lambda" in real:
                line += (
                    "; end to end (`lambda_torchserve` vs `lambda`) "
                    f"{real['lambda_torchserve vs lambda']['median']:+.2f} ms"
                )
            lines.append(line + ".")
    if small:
        # The in-process hops only: TorchServe's own cost is the diagnosis of the phone photo's above.
        hops = [
            value
            for label, value in small["added_ms"].items()
            if label != EVERYTHING and "torchserve" not in label
        ]
        lines.append(
            f"For the {small['bytes'] / 1e3:.0f} KB photo the same path adds "
            f"{small['added_ms'][EVERYTHING]:+.1f} ms "
            f"(ratio {small['ratio_vs_bare']['lambda']['median']:.3f}x): the fixed per-request costs "
            f"(botocore request building, HTTP round trip, JSON) add at most {max(hops):+.1f} ms per hop "
            "(hop table above)."
        )
    lines.append(
        "Keep-alive works (botocore's pool and the server's HTTP/1.1 handler reuse one connection, so no "
        "connect or thread start per request), and the endpoint runs the forward pass on the server thread "
        "with the same intra-op pool as `bare`. Fixes are listed under Decisions."
    )
    return "\n\n".join(lines)
