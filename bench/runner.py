"""``python -m bench``: run the benchmark suite, write docs/benchmarks.md, docs/benchmarks.json, docs/img/.

    python -m bench [--quick] [--compile] [--only inference,preprocess,serving,lambda,training,loader]

``--quick`` scales every size down (a smoke test of the tools, about a minute); the default sizes
take a few minutes on 2 cores. A benchmark that fails is reported as failed in the document and
the others still run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import cost, machine, plots, report
from . import decisions as decide

REPO_ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("inference", "preprocess", "serving", "lambda", "training", "loader")


@dataclass(frozen=True)
class Sizes:
    latency_iters: int
    throughput_repeats: int
    batches: tuple[int, ...]
    preprocess_repeats: int
    serving_repeats: int
    component_iterations: int
    capacity_requests: int
    capacity_rounds: int
    cold_runs: int
    warm_iterations: dict[str, int]
    train: dict[str, Any]
    loader: dict[str, Any]


FULL = Sizes(
    latency_iters=20,
    throughput_repeats=3,
    batches=(8, 32),
    preprocess_repeats=10,
    serving_repeats=20,
    component_iterations=50,
    capacity_requests=24,
    capacity_rounds=3,
    cold_runs=10,
    warm_iterations={"small": 300, "medium": 100, "phone": 30},
    train={"arch": "resnet18", "image_size": 96, "batch_size": 8, "steps": 2, "repeats": 3, "per_class": 16},
    loader={"images": 32, "repeats": 15, "batch_size": 8, "steps": 2, "step_repeats": 3},
)
QUICK = Sizes(
    latency_iters=5,
    throughput_repeats=2,
    batches=(8,),
    preprocess_repeats=3,
    serving_repeats=3,
    component_iterations=5,
    capacity_requests=4,
    capacity_rounds=1,
    cold_runs=3,
    warm_iterations={"small": 20, "medium": 5, "phone": 3},
    train={"arch": "resnet18", "image_size": 64, "batch_size": 8, "steps": 1, "repeats": 2, "per_class": 8},
    loader={"images": 8, "repeats": 2, "batch_size": 4, "steps": 1, "step_repeats": 1},
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="scaled-down sizes: checks the tools, not speed")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument(
        "--archs", help="comma-separated backbones for the inference benchmark (default: all)"
    )
    parser.add_argument(
        "--serving-arch", help="backbone for the serving benchmarks (default: the chosen one)"
    )
    parser.add_argument(
        "--render-only",
        type=Path,
        metavar="JSON",
        help="re-render the document, plots and decisions from a saved benchmarks.json (no measuring)",
    )
    parser.add_argument("--markdown", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "docs" / "benchmarks.json")
    parser.add_argument("--img-dir", type=Path, default=REPO_ROOT / "docs" / "img")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    return args


def guarded(name: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    log(f"[bench] {name} ...")
    started = time.perf_counter()
    try:
        result = call()
    except Exception as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]}
    result["seconds"] = round(time.perf_counter() - started, 1)
    log(f"[bench] {name} done in {result['seconds']:.0f} s")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        results = json.loads(args.render_only.read_text())["results"]
        write_outputs(args, results, decide.derive(results))
        log(f"[bench] re-rendered {args.markdown} and {args.json} from {args.render_only}")
        return 0
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": machine.facts(),
        "mode": "quick" if args.quick else "full",
        "quick": args.quick,
        "sizes": {k: (list(v) if isinstance(v, tuple) else v) for k, v in sizes.__dict__.items()},
    }
    log(f"[bench] {results['mode']} run; load average {results['machine']['load_average']}")

    from .images import PHONE_SIZE, SMALL_SIZE, photo_jpeg

    images = {"phone": photo_jpeg(PHONE_SIZE, seed=0), "small": photo_jpeg(SMALL_SIZE, seed=1)}

    if "inference" in args.sections:
        from . import inference_speed

        results["inference"] = guarded(
            "inference",
            lambda: inference_speed.run(
                archs=tuple(args.archs.split(",")) if args.archs else inference_speed.CANDIDATES,
                latency_iters=sizes.latency_iters,
                throughput_repeats=sizes.throughput_repeats,
                batches=sizes.batches,
                with_compile=args.compile,
                log=log,
            ),
        )
    backbone = None
    if "models" in results.get("inference", {}):
        backbone = decide.choose_backbone(results["inference"])["arch"]
    serving_arch = args.serving_arch or backbone or "resnet50"

    if "preprocess" in args.sections:
        from . import preprocess_speed

        results["preprocess"] = guarded(
            "preprocess",
            lambda: preprocess_speed.run(repeats=sizes.preprocess_repeats, images=images, log=log),
        )
    if "serving" in args.sections:
        results["serving"] = guarded("serving", lambda: _serving(serving_arch, sizes, images, results))
    if "lambda" in args.sections:
        from . import lambda_overhead

        results["lambda"] = guarded(
            "lambda",
            lambda: lambda_overhead.run(
                cold_runs=sizes.cold_runs,
                warm_iterations=sizes.warm_iterations,
                # A 2 MP photo, what an app that downscales before upload sends, between the two.
                images={
                    "small": images["small"],
                    "medium": photo_jpeg((1600, 1200), seed=2),
                    "phone": images["phone"],
                },
                log=log,
            ),
        )
    if "training" in args.sections:
        from . import training_speed

        results["training"] = guarded("training", lambda: training_speed.run(**sizes.train, log=log))
    if "loader" in args.sections:
        from . import loader_speed

        results["loader"] = guarded("loader", lambda: loader_speed.run(**sizes.loader, log=log))

    results["machine_end"] = {"load_average": [round(v, 2) for v in machine.load_average()]}
    results["wall_seconds"] = time.perf_counter() - started
    derived = decide.derive(results)
    write_outputs(args, results, derived)
    log(f"[bench] wrote {args.markdown} and {args.json} in {results['wall_seconds']:.0f} s")
    return 0


def _serving(arch: str, sizes: Sizes, images: dict[str, bytes], results: dict[str, Any]) -> dict[str, Any]:
    from . import serving_overhead

    out = serving_overhead.run(
        arch=arch,
        repeats=sizes.serving_repeats,
        component_iterations=sizes.component_iterations,
        images=images,
        log=log,
    )
    cpus = results["machine"]["usable_cpus"]
    by_arch = {}
    for name in dict.fromkeys([arch, "resnet50"]):
        by_arch[name] = serving_overhead.capacity(
            name, images["phone"], cpus, sizes.capacity_requests, rounds=sizes.capacity_rounds, log=log
        )
    out["capacity"] = {"by_arch": by_arch, "best": by_arch[arch]["best"]}
    return out


def write_outputs(args: argparse.Namespace, results: dict[str, Any], derived: dict[str, Any]) -> None:
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.img_dir.mkdir(parents=True, exist_ok=True)
    facts = results["machine"]
    for key, draw in (
        ("inference", plots.inference),
        ("preprocess", plots.preprocess),
        ("serving", plots.serving),
        ("training", plots.training),
    ):
        section = results.get(key, {})
        if section and "error" not in section:
            try:
                draw(section, facts, args.img_dir)
            except Exception:  # a plot must not lose the numbers
                traceback.print_exc()
    if "cost" in derived:
        plots.cost_plot(derived["cost"], facts, args.img_dir)
    args.markdown.write_text(report.render(results, derived))
    config = {
        "generated_by": "make bench (python -m bench)",
        "document": "docs/benchmarks.md",
        "date_utc": facts["date_utc"],
        "mode": results["mode"],
        "machine": {
            k: facts[k] for k in ("cpu_model", "usable_cpus", "torch", "torch_threads", "load_average")
        },
        "load_average_end": results["machine_end"]["load_average"],
        "serving_backbone": derived.get("backbone", {}).get("arch"),
        "stages": derived.get("stages", {}),
        "cost_inputs": derived.get("cost_inputs", {}),
        "rules": {
            "target_invocations_per_instance": f"floor(max req/s per instance x {cost.SAFETY_FACTOR} x 60)",
            "max_instances": "instances target tracking needs at the stage's peak design load",
            "lambda_provisioned_concurrency": (
                f"ceil(steady req/s x request seconds / {decide.LAMBDA_UTILIZATION_TARGET})"
            ),
            "design_load_rps": decide.DESIGN_LOAD,
        },
        "results": results,
    }
    args.json.write_text(json.dumps(config, indent=2, default=str) + "\n")
