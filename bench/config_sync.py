"""Copy the benchmark-derived stage values (docs/benchmarks.json, "stages") into cdk.json.

    python -m bench.config_sync            # list the keys where cdk.json differs; exit 1 if any
    python -m bench.config_sync --write    # write the derived values into cdk.json, then review the diff

Only :data:`bench.decisions.CONFIG_KEYS` are touched. A value every stage shares lives in
``dogbreed:defaults``; the dev stage's derived value becomes the default, and any other stage whose
derived value differs gets an override (an override equal to the default is removed).

A number within :data:`TOLERANCE` of the derived one is in sync and is left as it is: a run on a shared
machine moves capacities by a few percent, the 0.5 safety factor in the target dwarfs that, and a
`cdk diff` that changes the scaling target on every benchmark run would teach reviewers to skim it.
Small counts (instances, workers) still move on any change: one off is more than the tolerance.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .decisions import CONFIG_KEYS

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULTS_KEY = "dogbreed:defaults"
STAGES_KEY = "dogbreed:stages"
DEFAULT_STAGE = "dev"
TOLERANCE = 0.10


def in_sync(current: Any, derived: Any) -> bool:
    """Equal, or both numbers and ``current`` within :data:`TOLERANCE` of ``derived``."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (current, derived))
    if not numbers:
        return type(current) is type(derived) and current == derived
    return abs(current - derived) <= TOLERANCE * abs(derived)


def effective(context: dict[str, Any], stage: str) -> dict[str, Any]:
    """A stage's values as the app reads them: the defaults, then the stage's overrides."""
    return {**context[DEFAULTS_KEY], **context[STAGES_KEY].get(stage, {})}


def differences(context: dict[str, Any], derived: dict[str, dict[str, Any]]) -> list[str]:
    """One line per stage and key whose effective cdk.json value is not the derived one."""
    lines = []
    for stage, values in derived.items():
        current = effective(context, stage)
        for key in CONFIG_KEYS:
            if not in_sync(current.get(key), values[key]):
                lines.append(f"{stage}.{key}: cdk.json {current.get(key)!r}, derived {values[key]!r}")
        # The image tag is a version, not derived, but its build must match the instance's kind.
        kind, tag = values.get("inference_image_kind"), current.get("inference_image_tag", "")
        if kind and f"-{kind}-" not in tag:
            lines.append(
                f"{stage}.inference_image_tag: cdk.json {tag!r} is not a -{kind}- image, which "
                f"{values['instance_type']} needs (set it by hand)"
            )
    return lines


def apply(context: dict[str, Any], derived: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``context`` with the derived values written in (a new dict; the input is not changed).

    A key is rewritten only where some stage's value is out of sync; then every stage takes the
    derived value for it, so that the stages stay consistent with one run.
    """
    context = json.loads(json.dumps(context))
    defaults, stages = context[DEFAULTS_KEY], context[STAGES_KEY]
    for key in CONFIG_KEYS:
        if all(in_sync(effective(context, stage).get(key), values[key]) for stage, values in derived.items()):
            continue
        if DEFAULT_STAGE in derived and key not in stages.get(DEFAULT_STAGE, {}):
            defaults[key] = derived[DEFAULT_STAGE][key]
        for stage, values in derived.items():
            overrides = stages.setdefault(stage, {})
            if values[key] == defaults[key]:
                overrides.pop(key, None)
            else:
                overrides[key] = values[key]
    return context


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.config_sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write the derived values into cdk.json")
    parser.add_argument("--benchmarks", type=Path, default=REPO_ROOT / "docs" / "benchmarks.json")
    parser.add_argument("--cdk-json", type=Path, default=REPO_ROOT / "cdk.json")
    args = parser.parse_args(argv)
    derived = json.loads(args.benchmarks.read_text())["stages"]
    cdk_json = json.loads(args.cdk_json.read_text())
    lines = differences(cdk_json["context"], derived)
    for line in lines:
        print(line)
    if not lines:
        print(f"{args.cdk_json.name} holds the values derived in {args.benchmarks.name}")
        return 0
    if not args.write:
        return 1
    cdk_json["context"] = apply(cdk_json["context"], derived)
    args.cdk_json.write_text(json.dumps(cdk_json, indent=2) + "\n")
    left = differences(cdk_json["context"], derived)
    print(f"wrote {len(lines) - len(left)} value(s) into {args.cdk_json}; review with git diff")
    for line in left:
        print(f"not written: {line}")
    return 1 if left else 0


if __name__ == "__main__":
    raise SystemExit(main())
