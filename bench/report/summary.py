"""## Decisions: the backbone, each stage's instance type and counts, the targets, and the fixes; every
verdict from :mod:`bench.decisions`, printed here."""

from __future__ import annotations

from typing import Any

from .. import config_sync, cost
from .. import decisions as decide
from ..lambda_overhead import COLD_TARGET_MS, WARM_TARGET_MS
from .lambda_handler import lambda_blockers
from .text import f1, table, verdict


def _bf16_hardware(machine: dict[str, Any]) -> str:
    if machine.get("amx"):
        return "AMX"
    return "AVX512-BF16" if machine.get("avx512_bf16") else "no bf16 instructions"


def decisions_section(results: dict[str, Any], derived: dict[str, Any]) -> str:
    """The section, from the measured ``results`` and what :func:`bench.decisions.derive` made of them."""
    parts = ["## Decisions"]
    backbone = derived.get("backbone")
    if backbone:
        rows = [
            [c["arch"], f"{c['top1']:.1f}", c["variant"], f1(c["min_ms"]), f1(c["p50_ms"]), f1(c["p99_ms"])]
            for c in backbone["candidates"]
        ]
        parts += [
            f"**Serving default backbone: `{backbone['arch']}` ({backbone['variant']}).** Rule: "
            f"{backbone['rule']}.",
            table(
                [
                    "backbone",
                    "ImageNet top-1 % (published)",
                    "best fp32 variant",
                    "b1 min ms",
                    "b1 p50 ms",
                    "b1 p99 ms",
                ],
                rows,
            ),
        ]
    stages = derived.get("stages", {})
    if stages:
        parts += _stage_parts(stages, derived.get("single_worker_rps"))
    lam = results.get("lambda", {})
    if "cold" in lam:
        judged = decide.lambda_verdicts(lam, COLD_TARGET_MS, WARM_TARGET_MS)
        cold = lam["cold"]["import_handler_ms"]
        warm_text = "; ".join(
            f"{name} {entry['ms'][decide.WARM_JUDGED_CALL]['median']:.2f} ms"
            for name, entry in lam["warm"]["images"].items()
        )
        parts.append(
            f"**Lambda vs targets:** cold import min {cold['min']:.0f} ms (median {cold['median']:.0f}) "
            f"vs <= {judged.cold.target:g} ms: {verdict(judged.cold)}; warm overhead {warm_text} "
            f"vs <= {WARM_TARGET_MS:g} ms."
        )
        parts.append(lambda_blockers(lam, results.get("serving", {})))
    serving = results.get("serving", {})
    if "images" in serving:
        judged = decide.serving_verdict(serving)
        where = "production path" if judged.production else "in-process path, no TorchServe run"
        parts.append(
            f"**Serving overhead vs target:** {judged.verdict.value:.3f}x (median, `{judged.path}`: {where}) "
            f"vs <= {judged.verdict.target}x: "
            + ("met" if judged.verdict.met else "missed")
            + ". See the diagnosis above and the fixes below."
        )
    parts.append(FIXES)
    advice = decide.cpu_layout_advice(results.get("inference", {}), serving.get("arch", ""))
    if advice:
        if advice.apply_channels_last:
            parts.append(
                "6. `inference/inference.py` `model_fn`/`predict_fn`: use channels_last on CPU as "
                "well, not only "
                f"on CUDA: `{advice.arch}` runs {advice.channels_last_gain:.2f}x faster at batch 1 with it "
                "on this host (inference table). The same two lines that the CUDA branch has, without the "
                "device test."
            )
        else:
            parts.append(
                f"6. channels_last on CPU: {advice.channels_last_gain:.2f}x for `{advice.arch}` at batch 1 "
                "here, no reason to change "
                "`model_fn` (it uses channels_last on CUDA only)."
            )
        if advice.bf16_gain is not None:
            parts.append(
                f"7. bf16 on CPU (informational, not applied): {advice.bf16_gain:.2f}x "
                "eager fp32 at batch 1 on this CPU "
                f"({_bf16_hardware(results.get('machine', {}))}). Worth a test on c7i (AMX) once predictions "
                "are checked against fp32 on the trained model."
            )
    return "\n\n".join(parts)


def _stage_parts(stages: dict[str, Any], single_worker_rps: float | None) -> list[str]:
    parts = [
        "**Instance types, counts and targets.** The design fixes a GPU EndpointConfig "
        "(README, introduction), so each stage takes the cheapest GPU type at its steady design load "
        "(then at its peak), running this project's handler (batch 1); the cheapest CPU type is the "
        "measured alternative next to it. `target_invocations_per_instance` = max req/s per instance "
        f"x {cost.SAFETY_FACTOR:g} x 60; `max_instances` = what target tracking needs at the peak design "
        "load (at least one above the minimum); Lambda provisioned concurrency = ceil(req/s x measured "
        f"request seconds / {decide.LAMBDA_UTILIZATION_TARGET:g}) at the steady and peak loads (the peak's "
        "at least one above). `cdk.json` holds "
        f"these values to within {config_sync.TOLERANCE:.0%} (`python -m bench.config_sync` rewrites "
        "a value only beyond that, so run-to-run noise does not churn `cdk diff`; "
        "`tests/bench/test_config_traceability.py` fails when they drift further apart)."
    ]
    if single_worker_rps:
        parts.append(
            "**TorchServe workers.** TorchServe starts one worker per GPU on a GPU host; that one "
            "worker decodes every JPEG on one core and then waits for its forward pass: at most "
            f"{single_worker_rps:.0f} req/s with the measured decode, whatever the GPU. The stages set "
            "`inference_workers` to the instance's vCPUs and `inference_threads_per_worker` to 1 "
            "(`SAGEMAKER_MODEL_SERVER_WORKERS`, `OMP_NUM_THREADS` in the model's environment), so "
            "every core decodes while the GPU runs the forwards."
        )
    rows = []
    for stage, values in stages.items():
        for label, entry in (("chosen", values), ("CPU alternative", values["cpu_alternative"])):
            rows.append(
                [
                    stage,
                    label,
                    f"`{entry['instance_type']}` ({entry['inference_image_kind']} image)",
                    f"{entry['max_rps_per_instance']:g}",
                    str(entry["target_invocations_per_instance"]),
                    f"{entry['min_instances']}-{entry['max_instances']}",
                    f"{entry['inference_workers']} x {entry['inference_threads_per_worker']}",
                    f"{entry['usd_per_month_at_steady_load']:,.0f} @ "
                    f"{entry['design_load_rps']['steady']} req/s",
                    entry["capacity_basis"],
                ]
            )
    parts.append(
        table(
            [
                "stage",
                "",
                "instance_type",
                "max req/s per instance",
                "target_invocations_per_instance",
                "min-max instances",
                "workers x threads",
                "$/month at steady load",
                "capacity basis",
            ],
            rows,
        )
    )
    for stage, values in stages.items():
        alternative = values["cpu_alternative"]
        saving = values["cpu_alternative_saving_percent"]
        cheaper = f"{saving}% less" if saving >= 0 else f"{-saving}% more"
        cheapest = values["cheapest_overall_at_steady_load"]
        parts.append(
            f"**{stage}:** Lambda provisioned concurrency {values['lambda_provisioned_concurrency']} "
            f"(autoscaled up to {values['lambda_provisioned_concurrency_max']}). The CPU alternative "
            f"`{alternative['instance_type']}` would cost {cheaper} "
            "at the steady load: set `instance_type`, a `-cpu-` `inference_image_tag`, "
            "`target_invocations_per_instance`, `max_instances` and `inference_workers` to its row. "
            f"Cheapest of all options at that load: {cheapest}."
            + (
                " (SageMaker Serverless, `serving_mode=serverless`, costs cold starts of seconds after "
                "idle periods.)"
                if cheapest.startswith("SageMaker Serverless")
                else ""
            )
        )
    return parts


# The record of what changed in the code after earlier runs: prose about the code, not a reading of
# this run (items 6 and 7 below it are, and come from bench.decisions.cpu_layout_advice).
FIXES = """### Fixes found by this benchmark, and where they stand

1. Applied: `lambda/prediction_request.py` decodes base64 strictly first and removes whitespace only
   when that fails, instead of copying every body through `"".join(text.split())` (one full copy of
   a multi-MB string per request, and millions of small strings for a body like "AB AB AB ..."); the
   fallback is one ASCII copy through `bytes.translate`, the whitespace row in the component table.
2. Advice to API clients (README, serving docs): send the photo downscaled (short side about
   256-512 px). Every per-request cost on the path (base64 in Lambda, SigV4 hash, transfer, decode)
   scales with the upload, and the model sees 224x224 either way; the 4 MB limit stays as the guard.
3. Lambda cold start: `import boto3` + client creation is most of the import time (table above).
   Applied: the client is created at module level (warm calls reuse it and its connection pool),
   provisioned concurrency in both stages (the derived values above) keeps the import off the
   request path, and the handler imports `botocore.session` rather than `boto3` (the boto3 layer and
   s3transfer are not needed to call one API).
4. Applied: endpoint workers and threads. TorchServe starts one worker per GPU on a GPU host (one per
   vCPU on a CPU host, each with an intra-op pool as large as the machine, which oversubscribes the
   cores under load; the SageMaker toolkit does not set `OMP_NUM_THREADS`,
   aws/sagemaker-pytorch-inference-toolkit issue 123). The model's environment sets
   `SAGEMAKER_MODEL_SERVER_WORKERS` and `OMP_NUM_THREADS` from the stage config's `inference_workers`
   and `inference_threads_per_worker`, whose values are derived above.
5. Keep what already works: one client per Lambda container (keep-alive), a read timeout, the
   endpoint-side JPEG draft decoding, and the forward pass under `torch.inference_mode()`."""
