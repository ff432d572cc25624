"""Promote a registered model package to a stage: one reviewed line of cdk.json.

    make promote STAGE=prod PACKAGE=arn:aws:sagemaker:REGION:ACCOUNT:model-package/dogbreed-prod/3
    python -m stacks.promote --stage prod --package ARN [--region REGION]

First the stage's config is built offline with the package in it, through the project's own validation
(stacks.config: a versioned package of the stage's group ``dogbreed-<stage>``), so a bad ARN fails with the
message ``cdk synth`` would print. Then SageMaker describes the package, in the ARN's region: it must be
``Completed`` and ``Approved``; a non-production stage may also serve a ``PendingManualApproval`` one (a
production stage's deploy checks the approval again). Only then is the stage's ``model_package_arn``
written, and nothing else in cdk.json changes. The change reaches AWS as a pull request: after it is
merged, ``cdk deploy`` replaces the Model and EndpointConfig and updates the endpoint in place.

Exit status: 0 when cdk.json names the package (written now, or already), 1 when the package is not one
this stage may serve, 2 when nothing could be decided (a config error, no credentials, AWS refused or was
unreachable). Every failure is one line on stderr. IAM permission it uses: sagemaker:DescribeModelPackage.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3

from stacks.config import (
    DEFAULTS_CONTEXT_KEY,
    STAGES_CONTEXT_KEY,
    ConfigError,
    StageConfig,
    committed_stage_values,
    load_stage_config,
)
from stacks.model_environment import CDK_JSON, LOCAL_ALARM_EMAIL
from stacks.preflight import CANNOT_CHECK, CLIENT_CONFIG, OK, Result, guarded, session_region
from training.register import approve_command

TOOL = "promote"
CHECK = "model package"
REFUSED = "REFUSED"
KEY = "model_package_arn"
EXIT_CODES = {OK: 0, REFUSED: 1, CANNOT_CHECK: 2}
EMPTY = '""'


def stage_config_with_package(context: Mapping[str, Any], stage: str, package: str) -> StageConfig:
    """The stage's config as ``cdk synth -c stage=STAGE`` builds it once cdk.json names ``package``.

    Raises ConfigError with the config's own one-line message. The alarm destination is the placeholder the
    other offline tools use (stacks.model_environment): promotion does not depend on it.
    """
    stages = context.get(STAGES_CONTEXT_KEY)
    if isinstance(stages, Mapping) and isinstance(stages.get(stage), Mapping):
        stages = {**stages, stage: {**stages[stage], KEY: package}}
    trial = {**context, STAGES_CONTEXT_KEY: stages, "stage": stage, "alarm_email": LOCAL_ALARM_EMAIL}
    trial.pop(KEY, None)  # a top-level (command-line) value would override the stage's and be checked instead
    return load_stage_config(trial.get)


def summary(package: Mapping[str, Any]) -> str:
    """What is promoted: ``dogbreed-prod version 3: Approved, Completed; arch=resnet50, test_acc1=0.91``."""
    metadata = package.get("CustomerMetadataProperties", {})
    return (
        f"{package.get('ModelPackageGroupName')} version {package.get('ModelPackageVersion')}: "
        f"{package.get('ModelApprovalStatus', 'no approval status')}, {package['ModelPackageStatus']}; "
        + (", ".join(f"{k}={v}" for k, v in sorted(metadata.items())) or "no CustomerMetadataProperties")
    )


def check_package(config: StageConfig, sagemaker: Any) -> Result:
    """OK when the stage may serve its package, else REFUSED with what to do; the summary in either case."""
    arn = config.model_package_arn
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    facts, status, approval = (
        summary(package),
        package["ModelPackageStatus"],
        package.get("ModelApprovalStatus"),
    )
    if status != "Completed":
        return Result(
            REFUSED,
            CHECK,
            f"{facts}: ModelPackageStatus is {status}, not Completed: wait until SageMaker completes it, or "
            "register the model again if it failed",
        )
    if approval == "Approved":
        return Result(OK, CHECK, facts)
    if approval != "PendingManualApproval":
        return Result(REFUSED, CHECK, f"{facts}: no stage serves a package that is not Approved")
    approve = approve_command(arn, config.model_package_region)
    if config.production:
        return Result(
            REFUSED,
            CHECK,
            f"{facts}: a production stage serves only Approved packages; once it is reviewed, approve it "
            f"({approve}) and promote it again",
        )
    return Result(
        OK,
        CHECK,
        f"{facts}: still pending: {config.stage} is not a production stage, so it may serve it; production "
        f"serves it only once it is approved ({approve})",
    )


def render(data: Any) -> str:
    """cdk.json's layout: ``json.dumps`` with two-space indents and a final newline."""
    return json.dumps(data, indent=2) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` in one rename (readers see the old file or the new), keeping its mode."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_package(path: Path, text: str, data: dict[str, Any], config: StageConfig) -> int:
    """Set the stage's model_package_arn in cdk.json (``text``, parsed: ``data``) and say what comes next."""
    context = data["context"]
    entry = context[STAGES_CONTEXT_KEY][config.stage]
    old = entry.get(KEY, context[DEFAULTS_CONTEXT_KEY].get(KEY, ""))
    new = config.model_package_arn
    where = f"{STAGES_CONTEXT_KEY}.{config.stage}.{KEY}"
    if old == new:
        print(f"cdk.json: {where} is already {new}: nothing to change")
        return 0
    if render(data) != text:
        print("note: cdk.json was not laid out as json.dumps(indent=2) writes it: review the whole diff")
    # A new key goes first: appending it would also change the line above (its comma), two lines, not one.
    context[STAGES_CONTEXT_KEY][config.stage] = {**entry, KEY: new} if KEY in entry else {KEY: new, **entry}
    try:
        write_atomically(path, render(data))
    except OSError as exc:
        return _error(f"cannot write {path}: {exc}")
    print(f"cdk.json: {where}: {old or EMPTY} -> {new}")
    for line in next_steps(config, context):
        print(line)
    return 0


def next_steps(config: StageConfig, context: Mapping[str, Any]) -> list[str]:
    stack = f"{config.stack_prefix}-serving"
    committed = committed_stage_values(context, config.stage)
    alarms = (
        "" if committed.get("alarm_email") or committed.get("alarm_topic_arn") else " -c alarm_email=ADDRESS"
    )
    arguments = f"-c stage={config.stage}{alarms if config.production else ''} {stack}"
    return [
        "next: review the one-line change (git diff cdk.json) and open a pull request with it; once merged:",
        f"  npx cdk diff {arguments}",
        "    shows the Model and EndpointConfig replaced and the Endpoint updated in place",
        f"  npx cdk deploy {arguments}",
        "    a blue/green deployment that rolls back on its own if an alarm fires while it bakes",
        f"  make deploy-check STAGE={config.stage}",
    ]


def _error(message: str) -> int:
    print(f"{TOOL}: {message}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stacks.promote", description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", required=True, help="a stage of cdk.json (dev, prod)")
    p.add_argument("--package", required=True, help="a versioned model package ARN of group dogbreed-STAGE")
    p.add_argument("--region", help="must be the package's region, which is the default")
    return p


def main(
    argv: Sequence[str] | None = None, session: boto3.Session | None = None, cdk_json: Path = CDK_JSON
) -> int:
    """Check the package and write it into cdk.json; return the exit status. Parameters are for tests."""
    args = build_parser().parse_args(argv)
    path = Path(cdk_json)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
        context = data.get("context") if isinstance(data, dict) else None
        config = stage_config_with_package(
            context if isinstance(context, dict) else {}, args.stage, args.package
        )
    except ConfigError as exc:
        return _error(f"config error: {exc}")
    except (OSError, ValueError) as exc:  # unreadable, or not JSON
        return _error(f"cannot read {path}: {exc}")
    region = config.model_package_region
    if args.region not in (None, region):
        return _error(
            f"--region {args.region}: the package is in {region}, and SageMaker describes it only there"
        )
    resolved = session_region(region, session, tool=TOOL)
    if isinstance(resolved, int):
        return resolved
    session, region = resolved
    result = guarded(
        CHECK,
        lambda: check_package(config, session.client("sagemaker", region_name=region, config=CLIENT_CONFIG)),
    )
    print(result.line(), file=sys.stdout if result.status == OK else sys.stderr)
    if result.status != OK:
        return EXIT_CODES[result.status]
    return write_package(path, text, data, config)


if __name__ == "__main__":
    sys.exit(main())
