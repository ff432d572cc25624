"""## Cost: the measured comparison of every serving option, then each stage's idle cost and the cold start
of scaling to zero (every number from bench/cost.py's dated constants and the measured inputs)."""

from __future__ import annotations

from typing import Any

from .. import cost

TITLE = "## Cost"
IDLE_COST_TITLE = "### Idle cost per stage, and the cold start of scaling to zero"


def _cpu_cores_note() -> str:
    """How the priced CPU types' vCPUs map to cores (bench.cost.physical_cores)."""
    cpu = [i for i in cost.INSTANCES.values() if i.accelerator is None]
    vcpus = {i.vcpus for i in cpu}
    if len(vcpus) != 1:
        return "each Intel/AMD vCPU is one hyperthread, two to a core"
    (count,) = vcpus
    cores = cost.physical_cores(cpu[0])
    return f"an Intel/AMD xlarge's {count} vCPUs are {cores} cores x {count // cores} hyperthreads"


def cost_section(decisions: dict[str, Any], stages: list[dict[str, Any]] | None = None) -> str:
    """The measured comparison, then each stage's idle cost (``stages``: :func:`bench.cost.stage_cost`
    rows; by default the stages of cdk.json, which need no measurement)."""
    try:
        idle = idle_cost_subsection(cost.stage_costs_from_cdk_json() if stages is None else stages)
    except ValueError as exc:  # a config the loader rejects must not lose the measured numbers
        idle = f"{IDLE_COST_TITLE}\n\nNot computed: {exc}."
    if "cost" not in decisions:
        return f"{TITLE}\n\nNot computed: {decisions.get('cost_error', 'inputs missing')}.\n\n{idle}"
    comparison = decisions["cost"]
    inputs = decisions["cost_inputs"]
    lam = comparison["lambda"]
    return "\n\n".join(
        [
            TITLE,
            f"Region {comparison['region']}; prices: **list prices as of {comparison['price_date']}**, from "
            + "; ".join(f"{k}: {v}" for k, v in comparison["price_sources"].items())
            + ". Check the pricing pages before committing money: they were not re-read on the day of "
            "this run.",
            f"Measured inputs ({inputs['arch']}): this host serves {inputs['cpu_rps_host']:.1f} req/s "
            "of the whole "
            f"per-request work with {inputs['worker_layout']} on {inputs['host_vcpus']} cores, "
            f"{inputs['cpu_rps_per_core']:.2f} req/s per core; one request through the whole path takes "
            f"{inputs['request_seconds'] * 1000:.0f} ms; draft decode + preset of a phone photo "
            f"{inputs['cpu_decode_seconds'] * 1000:.1f} ms. **CPU instance capacities are this host's "
            "measured rate per core times the instance's physical cores** "
            f"({_cpu_cores_note()}; a load test on the instance replaces the number). **GPU "
            "capacities are not measured here**: min(measured decode rate x physical cores, "
            f"{comparison['gpu_reference']['source']}: batch 1 "
            f"{comparison['gpu_reference']['batch1_img_per_s']:g} img/s, batch 8 "
            f"{comparison['gpu_reference']['batch8_img_per_s']:g} img/s; A10G taken as >= T4), with one "
            "TorchServe worker per vCPU so that decoding runs on every core. Capacities are rounded down "
            f"to {_figures(cost.SIGNIFICANT_FIGURES)} significant figures. Serverless: "
            "duration = the measured request time (its vCPU share is not published; cold starts excluded). "
            "Rekognition Custom Labels: AWS publishes no TPS per inference unit; "
            f"{cost.REKOGNITION_ASSUMED_TPS_PER_IU:g} TPS/IU is an assumption.",
            f"Autoscaling target per instance = max req/s x {comparison['safety_factor']} x 60 "
            "(`SageMakerVariantInvocationsPerInstance`, AWS's load-test formula); instance counts are "
            "what target "
            f"tracking settles on at that steady rate, at least {comparison['min_instances']} (prod).",
            cost.format_table(comparison),
            f"API layer on top of any option (Lambda arm64, {lam['memory_mb']} MB, billed while it waits for "
            f"the endpoint): ${lam['usd_per_million']:.2f} per 1M requests; provisioned concurrency "
            f"${lam['provisioned_usd_per_month_per_unit']:.2f} per unit-month.",
            "![cost](img/bench-cost.png)",
            idle,
        ]
    )


def _figures(n: int) -> str:
    return {1: "one", 2: "two", 3: "three"}.get(n, str(n))


def idle_cost_subsection(stages: list[dict[str, Any]]) -> str:
    """Idle cost per month per stage, usage patterns, the idle episode and the cold start of scaling to
    zero: every number from ``stages`` (:func:`bench.cost.stage_cost` rows) and bench/cost.py's constants."""
    if not stages:
        raise ValueError("no stage to price")
    by_label = {row["stage"]: row for row in stages}
    lambda_rows = "; ".join(
        f"{row['stage']} {row['lambda_provisioned_concurrency']} unit(s), "
        f"${row['lambda_provisioned_usd_per_month']:.2f}"
        for row in stages
        if not row["stage"].endswith(" if instance")
    )
    parts = [
        IDLE_COST_TITLE,
        "Each stage as `cdk.json` configures it (`.venv/bin/python -m bench.cost --stages`), with no traffic "
        "and in a few usage patterns. Cells: `$/month (instance-hours)` at the on-demand prices above, plus "
        f"the Lambda's provisioned concurrency, billed whatever the traffic ({lambda_rows} a month). "
        "Per-request charges (Lambda requests and duration, Serverless compute) come on top, from the "
        "table above. A session is traffic with no gap longer than the idle timeout, at a load the stage's "
        "minimum instance count carries (one instance while a scale-to-zero stage serves); a stage that "
        "scales to zero is billed, per session, for a cold start (the upper estimate), the session and "
        "the idle episode after it. A stage in another mode than "
        "`instance` gets a second row, the same stage in `instance` mode, so the trade is visible.",
        cost.format_stage_table(stages),
    ]
    for row in stages:
        before = by_label.get(f"{row['stage']} if instance")
        if before:
            saving = before["idle_usd_per_month"] - row["idle_usd_per_month"]
            parts.append(
                f"**{row['stage']} idle: ${row['idle_usd_per_month']:,.2f}/month in `{row['serving_mode']}` "
                f"mode vs ${before['idle_usd_per_month']:,.2f} in `instance` mode: ${saving:,.2f} less**, "
                f"the {before['idle_instances']} x `{before['instance_type']}` x "
                f"{cost.HOURS_PER_MONTH} h (${before['usd_per_hour']:g}/h) no longer billed while idle."
            )
    episodes = [row for row in stages if row["idle_episode"]]
    if episodes:
        steps = cost.BLOG_COLD_START_MINUTES
        low, high = cost.COLD_START_MINUTES
        parts.append(
            "**Idle episode.** After the last request the instance keeps running for "
            "`scale_to_zero_idle_minutes` until the component's copies reach zero, then about "
            f"{cost.INSTANCE_SCALE_IN_MINUTES:g} minutes more while the instance scales in (AWS's blog: "
            f'"{cost.SCALE_TO_ZERO_QUOTES["blog"]}"): '
            + "; ".join(
                f"{row['stage']} {row['idle_episode']['minutes']:g} min, ${row['idle_episode']['usd']:.2f} "
                "per episode"
                for row in episodes
            )
            + "."
        )
        parts.append(
            f"**Cold start, the price of scaling to zero: {low:.1f}-{high:.1f} minutes from zero to the "
            "first answer, not measured here (no AWS account).** AWS's documentation: "
            f'"{cost.SCALE_TO_ZERO_QUOTES["docs"]}"; AWS\'s blog measured, for Llama3-8B on GPU instances, '
            "the alarm "
            f"firing in ~{steps['alarm']:g} min, the instance in ~{steps['instance']:g} min and the model "
            f"copy in ~{steps['model_copy']:g} min, {sum(steps.values()):.1f} min in all. Our copy pulls the "
            "multi-GB PyTorch DLC as well but loads one small CNN, so the estimate runs from the blog's "
            "alarm + instance steps to its whole measured time. Meanwhile the stage's Lambda answers 503 "
            "`model_starting` with a `Retry-After` header. Sources: "
            + "; ".join(f"{name}: {url}" for name, url in cost.SCALE_TO_ZERO_SOURCES.items())
            + "."
        )
    return "\n\n".join(parts)
