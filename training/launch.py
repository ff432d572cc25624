"""Start the SageMaker training job (SageMaker Python SDK v2, ``PyTorch`` estimator).

    python -m training.launch --stage dev [--instance-type ml.g4dn.12xlarge] [-H epochs=20] [--dry-run]
    python -m training.launch --role-arn ARN --bucket NAME --region eu-west-1 --dry-run
    python -m training.launch --stage dev --register   # wait, check the artifact, register it

The job runs ``training/sagemaker_entry.py`` (which runs ``training.train``) under the PyTorch training
DLC's ``torch_distributed`` launcher (torchrun, one process per GPU, every instance), on managed spot
capacity with checkpoints synced to S3, so an interrupted job resumes where it stopped.

Role, bucket and KMS key come from the CDK training stack's outputs (``dogbreed-<stage>-training``) or
from flags. ``--dry-run`` prints the complete CreateTrainingJob request and touches no AWS API: the
request is built by the SDK as for a real job, through the hook that SageMaker Pipelines use to capture
requests instead of sending them, and the source bundle's S3 key is computed, not uploaded.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import re
import sys
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacks.config import StageConfig
from stacks.instance_storage import has_local_nvme

from . import job_sizing, provenance
from . import register as registry
from .config import DATA_CHANNEL, WEIGHTS_CHANNEL, build_parser
from .metrics import METRIC_DEFINITIONS

# v2 prints a deprecation notice on import and on every estimator; docs/training.md explains the choice.
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
REPO_ROOT = Path(__file__).resolve().parents[1]
# The code the job needs: training/ and the inference/ modules it imports. Not the repo root, whose
# requirements.txt (CDK libraries) the container would pip-install.
SOURCE_PACKAGES = ("training", "inference")
# The sagemaker-training toolkit pip-installs a requirements.txt found in the source dir on every host at
# every start, spot restarts included (sagemaker_training/modules.py, install): that needs PyPI (a job
# in a VPC without NAT or with network isolation fails) and may swap the image's numpy or Pillow. The
# bundle carries none; tests/training/test_training_launch.py checks that the image has every
# third-party module the bundle imports.
ENTRY_POINT = "training/sagemaker_entry.py"
# Newest PyTorch training DLC that SDK 2.257 knows and allows with torch_distributed on GPUs
# (sagemaker/fw_utils.py TORCH_DISTRIBUTED_GPU_SUPPORTED_FRAMEWORK_VERSIONS).
FRAMEWORK_VERSION = "2.8.0"
PY_VERSION = "py312"
# Top-level modules that the PyTorch training DLC's Python imports without any install: the import names
# of what its Dockerfile pip-installs. For the stack's training_image_tag, 2.6.0-gpu-py312-cu126-ubuntu22.04
# -sagemaker: aws/deep-learning-containers pytorch/training/docker/2.6/py3/cu126/Dockerfile.gpu, stages
# "common" and "sagemaker", at dd3ba4642def ("Patch PyTorch 2.6 Training Images (#5608)", 2026-01-28); the
# SDK's FRAMEWORK_VERSION image (pytorch/training/docker/2.8/py3/cu129/Dockerfile.gpu at 324129b5d04f) has
# the same list. Two arrive as dependencies: botocore (of boto3) and matplotlib (of seaborn, whose
# pyproject.toml requires matplotlib>=3.4,!=3.6.1). The bundle must import nothing else.
DLC_MODULES = frozenset(
    {
        # "common": Cython, cryptography, pyOpenSSL, ..., pillow, tqdm, opencv-python, mpi4py
        "Cython", "cryptography", "OpenSSL", "pybind11", "parso", "charset_normalizer", "packaging",
        "boto3", "botocore", "yaml", "numpy", "scipy", "click", "psutil", "IPython", "ipykernel", "PIL",
        "h5py", "fsspec", "idna", "tqdm", "requests", "setuptools", "pkg_resources", "urllib3", "awscli",
        "ninja", "cv2", "mpi4py",
        # "sagemaker": the PyTorch wheels, their companions, SageMaker's packages and the extras
        "torch", "torchvision", "torchaudio", "torchtext", "torchdata", "torchtnt", "triton",
        "s3torchconnector", "accelerate", "spacy", "thinc", "blis", "langcodes", "language_data",
        "marisa_trie", "typer", "sniffio", "pytz", "tzdata", "google", "flash_attn", "transformer_engine",
        "smclarify", "sagemaker", "smexperiments", "sagemaker_pytorch_container", "sagemaker_training",
        "bokeh", "imageio", "numba", "pandas", "plotly", "shap", "sklearn", "seaborn", "matplotlib",
        "cloudpickle",
    }
)  # fmt: skip
STACK_NAME = "dogbreed-{stage}-training"
# Spot jobs are billed for training time only; max_wait bounds training plus time waiting for capacity.
DEFAULT_MAX_RUN = 4 * 3600
DEFAULT_MAX_WAIT = 8 * 3600
# Passed to every Session instead of the SDK's defaults files: the request depends only on this module's
# flags and the stack outputs, and the SDK's telemetry GET (to an S3 URL) is switched off.
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
# No lr and no amp: training.train's defaults scale the lr with the job's global batch (linear rule)
# and turn mixed precision on for a GPU, so the launcher does not pin values that fit one job shape only.
DEFAULT_HYPERPARAMETERS = {
    "epochs": "20",
    "batch-size": "64",
    "freeze-epochs": "1",
}


class LaunchError(ValueError):
    """A missing or bad launch setting; the message says which."""


@dataclass(frozen=True)
class Target:
    """Where the job reads and writes: from the training stack's outputs or from flags."""

    role_arn: str
    bucket: str
    data_prefix: str = "data/"
    output_prefix: str = "training-output/"
    checkpoint_prefix: str = "checkpoints/"
    code_prefix: str = "code/"
    # The one prefix the stack's training role reads weights from (a network-isolated job cannot download).
    weights_prefix: str = "weights/"
    kms_key_arn: str | None = None
    # The DLC the stack's role is set up for (its training_image_tag); None: the SDK's FRAMEWORK_VERSION.
    image_uri: str | None = None
    # The model package group the stack declares; None: a stack from before the model registry (or flags).
    model_package_group_name: str | None = None


def stack_target(stage: str, region: str, cloudformation: Any = None) -> Target:
    """Read the CDK training stack's CfnOutputs (needs credentials allowed cloudformation:DescribeStacks)."""
    if cloudformation is None:
        import boto3

        cloudformation = boto3.client("cloudformation", region_name=region)
    name = STACK_NAME.format(stage=stage)
    stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = [key for key in ("TrainingRoleArn", "BucketName") if key not in outputs]
    if missing:
        raise LaunchError(f"stack {name} has no output {', '.join(missing)}")
    return Target(
        role_arn=outputs["TrainingRoleArn"],
        bucket=outputs["BucketName"],
        data_prefix=outputs.get("DataPrefix", "data/"),
        output_prefix=outputs.get("OutputPrefix", "training-output/"),
        checkpoint_prefix=outputs.get("CheckpointPrefix", "checkpoints/"),
        code_prefix=outputs.get("CodePrefix", "code/"),
        weights_prefix=outputs.get("WeightsPrefix", "weights/"),
        kms_key_arn=outputs.get("KmsKeyArn") or None,
        image_uri=outputs.get("TrainingImageUri") or None,
        model_package_group_name=outputs.get("ModelPackageGroupName") or None,
    )


def parse_hyperparameters(pairs: Sequence[str]) -> dict[str, str]:
    """``-H key=value`` pairs on top of the defaults, each checked against training.train's own flags."""
    known = {opt[2:] for action in build_parser({"SM_MODEL_DIR": "x", "SM_CHANNEL_DATA": "x"})._actions
             for opt in action.option_strings if opt.startswith("--")}  # fmt: skip
    # Paths are the job's business (SM_* variables), not hyperparameters.
    known -= {"data-dir", "model-dir", "output-dir", "checkpoint-dir", "help"}
    hps = dict(DEFAULT_HYPERPARAMETERS)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("_", "-")
        if not sep or not value:
            raise LaunchError(f"hyperparameter {pair!r} is not KEY=VALUE")
        if key not in known:
            raise LaunchError(
                f"unknown hyperparameter {key!r}; training.train accepts: {', '.join(sorted(known))}"
            )
        hps[key] = value
    return hps


def source_bundle() -> bytes:
    """sourcedir.tar.gz: training/ and inference/, reproducible byte for byte.

    No requirements.txt: the image has every package the code imports (:data:`DLC_MODULES`), so a job
    runs the same with or without network and installs nothing at a spot restart.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for package in SOURCE_PACKAGES:
            for path in sorted((REPO_ROOT / package).rglob("*.py")):
                data = path.read_bytes()
                info = tarfile.TarInfo(path.relative_to(REPO_ROOT).as_posix())
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
    # tarfile's "w:gz" stamps the gzip header with the current time; a fixed one keeps the bytes equal.
    return gzip.compress(buffer.getvalue(), mtime=0)


def s3_uri(bucket: str, *parts: str) -> str:
    return "s3://" + "/".join([bucket, *(p.strip("/") for p in parts if p.strip("/"))])


def build_parser_launch() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.launch", description=__doc__.split("\n\n")[0])
    where = p.add_argument_group("account (stack outputs, or flags)")
    where.add_argument("--stage", help="read role, bucket and KMS key from stack dogbreed-<stage>-training")
    where.add_argument("--role-arn", help="SageMaker execution role (overrides the stack's)")
    where.add_argument("--bucket", help="bucket with data/ (overrides the stack's)")
    where.add_argument("--kms-key-arn", help="KMS key for output, checkpoints and volumes")
    where.add_argument(
        "--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    )
    where.add_argument(
        "--data-s3-uri", help="ImageFolder root with train/ valid/ test/ (default: s3://BUCKET/data/)"
    )
    where.add_argument("--weights-s3-uri", help="ImageNet state_dict file under s3://BUCKET/weights/, given "
                       "to the job as the 'weights' channel (required with --network-isolation unless "
                       "-H weights=none)")  # fmt: skip
    where.add_argument("--checkpoint-s3-uri", help="default: s3://BUCKET/checkpoints/JOB_NAME/; reuse one to "
                       "continue an earlier job")  # fmt: skip

    job = p.add_argument_group("job")
    job.add_argument("--job-name", help="default: dogbreed-<stage>-<UTC timestamp>")
    # One T4 host by default: a second one would spend as long all-reducing as computing (job_sizing).
    job.add_argument("--instance-type", default=job_sizing.DEFAULT.instance_type)
    job.add_argument("--instance-count", type=int, default=job_sizing.DEFAULT.hosts,
                     help="hosts; more than one all-reduce gradients over IPsec-encrypted links")  # fmt: skip
    job.add_argument("--volume-size", type=int, default=50, help="GB of EBS per instance")
    job.add_argument(
        "--spot", action=argparse.BooleanOptionalAction, default=True, help="managed spot capacity"
    )
    job.add_argument("--max-run", type=int, default=DEFAULT_MAX_RUN, help="seconds of training at most")
    job.add_argument(
        "--max-wait",
        type=int,
        default=DEFAULT_MAX_WAIT,
        help="seconds of training plus waiting for spot capacity (spot only; >= --max-run)",
    )
    job.add_argument("--input-mode", choices=("File", "FastFile"), default="File")
    job.add_argument(
        "--network-isolation",
        action="store_true",
        help="no network in the container: weights must come from --weights-s3-uri",
    )
    job.add_argument("--image-uri", help="training image (default: the stack's TrainingImageUri, else the "
                     f"SDK's pytorch-training {FRAMEWORK_VERSION} GPU image)")  # fmt: skip
    job.add_argument("--framework-version", default=FRAMEWORK_VERSION)
    job.add_argument("--py-version", default=PY_VERSION)
    job.add_argument("-H", "--hyperparameter", action="append", default=[], metavar="KEY=VALUE",
                     help="a training.train option for the job, e.g. -H epochs=30 -H arch=resnet101 "
                     f"(defaults: {DEFAULT_HYPERPARAMETERS})")  # fmt: skip
    job.add_argument(
        "--wait",
        action="store_true",
        help="stream the job's logs until it ends, then serve its model.tar.gz once through the DLC's "
        "TorchServe (localdev.check_artifact): a job whose artifact does not serve exits non-zero",
    )
    job.add_argument(
        "--register",
        action="store_true",
        help="implies --wait; needs --stage: once the artifact check passed, register model.tar.gz (metrics "
        "from the job's output.tar.gz) as a new PendingManualApproval version of the stage's model package "
        "group (python -m training.register); checked before the job starts: the training stack's "
        "ModelPackageGroupName output is that group, the bucket is the stage's; with --dry-run, print that "
        "command",
    )
    job.add_argument(
        "--dry-run", action="store_true", help="print the CreateTrainingJob request; call no AWS API"
    )
    return p


@dataclass(frozen=True)
class JobPlan:
    job_name: str
    region: str
    target: Target
    source_uri: str
    inputs: dict[str, str]
    checkpoint_uri: str
    hyperparameters: dict[str, str]
    args: argparse.Namespace
    # The launching checkout's commit, given to the job as DOGBREED_GIT_COMMIT for its metrics.json.
    git_commit: str | None = None


def plan(args: argparse.Namespace, cloudformation: Any = None) -> JobPlan:
    if not args.region:
        raise LaunchError("no AWS region: pass --region or set AWS_REGION")
    if args.instance_count < 1:
        raise LaunchError("--instance-count must be at least 1")
    if args.spot and args.max_wait < args.max_run:
        raise LaunchError("--max-wait must be at least --max-run for spot jobs")
    if args.stage and not re.fullmatch(r"[a-z][a-z0-9-]{0,20}", args.stage):
        raise LaunchError("--stage must be lower-case letters, digits and dashes")
    if args.register and not args.stage:
        raise LaunchError("--register needs --stage: the model goes into the stage's model package group")
    if args.stage:
        target = stack_target(args.stage, args.region, cloudformation)
        overrides = {"role_arn": args.role_arn, "bucket": args.bucket, "kms_key_arn": args.kms_key_arn,
                     "image_uri": args.image_uri}  # fmt: skip
        target = Target(**{**target.__dict__, **{k: v for k, v in overrides.items() if v}})
    elif args.role_arn and args.bucket:
        target = Target(
            role_arn=args.role_arn, bucket=args.bucket, kms_key_arn=args.kms_key_arn, image_uri=args.image_uri
        )
    else:
        raise LaunchError("give --stage (reads the training stack's outputs) or both --role-arn and --bucket")
    hyperparameters = parse_hyperparameters(args.hyperparameter)
    if args.network_isolation and not args.weights_s3_uri and hyperparameters.get("weights") != "none":
        raise LaunchError("--network-isolation needs --weights-s3-uri (no download from the container)")
    if args.weights_s3_uri:
        check_weights_uri(args.weights_s3_uri, target)
    job_name = (
        args.job_name or f"dogbreed-{args.stage or 'job'}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    )
    # The trailing slash matters: S3Prefix "data" would also match "data-capture/".
    inputs = {DATA_CHANNEL: args.data_s3_uri or s3_uri(target.bucket, target.data_prefix) + "/"}
    if args.weights_s3_uri:
        inputs[WEIGHTS_CHANNEL] = args.weights_s3_uri
    return JobPlan(
        job_name=job_name,
        region=args.region,
        target=target,
        source_uri=s3_uri(target.bucket, target.code_prefix, job_name, "sourcedir.tar.gz"),
        inputs=inputs,
        checkpoint_uri=args.checkpoint_s3_uri
        or s3_uri(target.bucket, target.checkpoint_prefix, job_name) + "/",
        hyperparameters=hyperparameters,
        args=args,
        git_commit=provenance.git_commit(),
    )


def check_weights_uri(uri: str, target: Target) -> None:
    """The job reads the file with the training role, which may read weights only under the weights prefix:
    anywhere else the job would start, then fail on AccessDenied while SageMaker downloads its channels."""
    weights_root = s3_uri(target.bucket, target.weights_prefix) + "/"
    if not uri.startswith(weights_root) or uri.endswith("/"):
        raise LaunchError(
            f"--weights-s3-uri must name a file under {weights_root}, the only place the training role reads "
            f"weights from (got {uri}); copy it there first: aws s3 cp FILE {weights_root}FILE"
        )


def estimator_for(job: JobPlan, session: Any):
    """The SDK's PyTorch estimator for the plan (imports the SDK only here: the rest needs no SageMaker)."""
    from sagemaker.pytorch import PyTorch

    args, target = job.args, job.target
    return PyTorch(
        entry_point=ENTRY_POINT,
        source_dir=job.source_uri,  # already a tar.gz in S3: the SDK uploads nothing
        image_uri=target.image_uri,
        framework_version=args.framework_version,
        py_version=args.py_version,
        role=target.role_arn,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        volume_size=args.volume_size,
        max_run=args.max_run,
        use_spot_instances=args.spot,
        max_wait=args.max_wait if args.spot else None,
        checkpoint_s3_uri=job.checkpoint_uri,
        checkpoint_local_path="/opt/ml/checkpoints",
        distribution={"torch_distributed": {"enabled": True}},
        hyperparameters=job.hyperparameters,
        metric_definitions=[dict(d) for d in METRIC_DEFINITIONS],
        output_path=s3_uri(target.bucket, target.output_prefix),
        code_location=s3_uri(target.bucket, target.code_prefix),
        output_kms_key=target.kms_key_arn,
        # Instance types with local NVMe storage reject a volume key (their instance store is
        # hardware-encrypted); everywhere else the EBS training volume uses the project key.
        volume_kms_key=None if has_local_nvme(args.instance_type) else target.kms_key_arn,
        encrypt_inter_container_traffic=True,
        enable_network_isolation=args.network_isolation,
        # The debugger and profiler rules add processing jobs and cost; train.py logs what we need.
        debugger_hook_config=False,
        disable_profiler=True,
        tags=[{"Key": "project", "Value": "dogbreed"}, {"Key": "stage", "Value": args.stage or "none"}],
        # The job's code is a bundle, not a checkout: train.py records this commit in metrics.json.
        environment={provenance.GIT_COMMIT_ENV: job.git_commit} if job.git_commit else None,
        sagemaker_session=session,
    )


def build_request(job: JobPlan) -> dict[str, Any]:
    """The CreateTrainingJob request exactly as the SDK would send it, without sending it.

    ``Session._intercept_create_request`` is the hook SageMaker Pipelines' ``PipelineSession`` overrides
    to capture requests; no credentials are needed because no client call is made.
    """
    import boto3
    from sagemaker.inputs import TrainingInput
    from sagemaker.session import Session

    captured: dict[str, Any] = {}

    class CapturingSession(Session):
        def _intercept_create_request(self, request, create, func_name=None):
            captured[func_name] = request

    session = CapturingSession(
        boto_session=boto3.Session(region_name=job.region),
        default_bucket=job.target.bucket,
        sagemaker_config=SDK_CONFIG,
    )
    estimator = estimator_for(job, session)
    estimator.fit(inputs=_inputs(job, TrainingInput), job_name=job.job_name, wait=False, logs=False)
    if "train" not in captured:
        raise LaunchError("the SDK built no training request")
    return captured["train"]


def _inputs(job: JobPlan, training_input: Any) -> dict[str, Any]:
    return {
        name: training_input(uri, input_mode=job.args.input_mode, distribution="FullyReplicated")
        for name, uri in job.inputs.items()
    }


def submit(job: JobPlan) -> str:
    """Upload the source bundle (encrypted with the stack's key) and start the job."""
    import boto3
    from sagemaker.inputs import TrainingInput
    from sagemaker.session import Session

    boto_session = boto3.Session(region_name=job.region)
    bucket, key = job.source_uri[len("s3://") :].split("/", 1)
    extra = (
        {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": job.target.kms_key_arn}
        if job.target.kms_key_arn
        else {}
    )
    boto_session.client("s3").put_object(Bucket=bucket, Key=key, Body=source_bundle(), **extra)
    session = Session(
        boto_session=boto_session, default_bucket=job.target.bucket, sagemaker_config=SDK_CONFIG
    )
    estimator = estimator_for(job, session)
    estimator.fit(inputs=_inputs(job, TrainingInput), job_name=job.job_name, wait=job.args.wait, logs="All")
    return job.job_name


def verify_artifact(model_data_url: str, stage: str) -> None:
    """Serve the finished job's artifact once, before anyone deploys it; LaunchError when it does not serve.

    The DLC's TorchServe where this machine has the serving stack and Java, else the handler in-process.
    """
    try:
        from localdev.check_artifact import ArtifactCheckFailed, CannotCheck, check_artifact
    except ImportError as exc:  # a launch-only venv (requirements-launch.txt) has no torch or Pillow
        raise LaunchError(
            f"the job finished; this environment cannot serve {model_data_url} ({exc}): run "
            "`python -m localdev.check_artifact URL` where requirements-dev.txt is installed"
        ) from None
    try:
        result = check_artifact(model_data_url, server="auto", stage=stage)
    except ArtifactCheckFailed as exc:
        raise LaunchError(f"the job finished, but {model_data_url} does not serve: {exc}") from None
    except CannotCheck as exc:
        raise LaunchError(
            f"the job finished; check {model_data_url} yourself before deploying: {exc}"
        ) from None
    print(f"{model_data_url} serves ({result.server}): localdev.check_artifact passed")


def job_artifacts(job: JobPlan) -> tuple[str, str]:
    """(model.tar.gz, output.tar.gz) URLs of the job: SageMaker writes <output_path>/<job>/output/."""
    output = s3_uri(job.target.bucket, job.target.output_prefix, job.job_name, "output")
    return f"{output}/model.tar.gz", f"{output}/output.tar.gz"


def register_command(job: JobPlan) -> str:
    """The training.register command that ``--register`` runs once the job's artifact has served."""
    model_data_url, metrics = job_artifacts(job)
    return registry.command_line(
        stage=job.args.stage, region=job.region, model_data_url=model_data_url, metrics=metrics,
        training_job=job.job_name, git_commit=job.git_commit,
    )  # fmt: skip


def check_model_registry(target: Target, stage: str, group: str) -> None:
    """The training stack must declare the group the stage's config registers into: a stack deployed
    before the model registry has none (``--register`` would fail on a missing group), and one deployed
    from another checkout may name another."""
    stack = STACK_NAME.format(stage=stage)
    deploy = f"npx cdk deploy -c stage={stage} {stack}"
    if target.model_package_group_name is None:
        raise LaunchError(
            f"stack {stack} predates the model registry (it has no ModelPackageGroupName output): deploy "
            f"it ({deploy}) before --register"
        )
    if target.model_package_group_name != group:
        raise LaunchError(
            f"stack {stack} declares model package group {target.model_package_group_name}, but stage "
            f"{stage}'s config (cdk.json) registers into {group}: deploy the stack from this checkout "
            f"({deploy}) before --register"
        )


def check_registration(job: JobPlan) -> StageConfig:
    """What ``--register`` needs, checked offline before the job starts (and again before registering):
    the stack's model package group and an artifact in the stage's bucket. Returns the stage's config."""
    model_data_url, _ = job_artifacts(job)
    try:
        config = registry.stage_config(job.args.stage, model_data_url)
        registry.check_stage_bucket(model_data_url, config, job.region)
    except registry.ERRORS as exc:
        raise LaunchError(registry.error_line(exc)) from None
    check_model_registry(job.target, job.args.stage, config.model_package_group_name)
    return config


def register_model(job: JobPlan) -> str:
    """Register the finished job's artifact in the stage's model package group; returns the version's ARN."""
    model_data_url, metrics_url = job_artifacts(job)
    try:
        config = check_registration(job)
    except LaunchError as exc:
        raise LaunchError(
            f"the job finished and {model_data_url} serves, but it was not registered: {exc}; then "
            f"register it with: {register_command(job)}"
        ) from None
    group = config.model_package_group_name
    try:
        s3 = registry.aws_client("s3", job.region)
        registration = registry.prepare(
            config,
            model_data_url=model_data_url,
            metrics=registry.load_metrics(metrics_url, s3),
            region=job.region,
            training_job=job.job_name,
            git_commit=job.git_commit,
        )
        arn = registry.create(
            registration, sagemaker_client=registry.aws_client("sagemaker", job.region), s3_client=s3
        )
    except registry.ERRORS as exc:
        raise LaunchError(
            f"the job finished and {model_data_url} serves, but registering it failed: "
            f"{registry.error_line(exc, group)}; retry with: {register_command(job)}"
        ) from None
    print(f"registered {arn} ({registry.APPROVAL_STATUS})")
    print(registry.next_steps(arn, config, job.region))
    return arn


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | str:
    args = build_parser_launch().parse_args(argv)
    # Registering needs the finished job and its checked artifact.
    args.wait = args.wait or args.register
    try:
        job = plan(args)
        if args.register:  # before a job of hours, not after it
            try:
                check_registration(job)
            except LaunchError as exc:
                raise LaunchError(f"--register: the job was not started: {exc}") from None
        if args.dry_run:
            request = build_request(job)
            printed = {"source_bundle": job.source_uri, "CreateTrainingJob": request}
            if args.register:  # the artifact does not exist yet: what would run after the job
                printed["register_after_job"] = register_command(job)
            print(json.dumps(printed, indent=2, default=str))
            return request
        name = submit(job)
        output = s3_uri(job.target.bucket, job.target.output_prefix, name)
        print(f"started training job {name} in {job.region}; artifacts under {output}")
        if args.wait:
            verify_artifact(job_artifacts(job)[0], args.stage or "dev")
        if args.register:
            register_model(job)
        return name
    except LaunchError as exc:
        raise SystemExit(f"training.launch: {exc}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
