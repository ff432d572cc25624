"""training.launch builds the real SDK request offline: spot, instance count, checkpoints, encryption."""

from __future__ import annotations

import io
import json
import re
import sys
import tarfile

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.stub import Stubber
from training_helpers import clean_env, run_command

from training import launch
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
    assert request["ResourceConfig"]["InstanceCount"] == 2
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
    assert hps["epochs"] == "30" and hps["amp"] == "true"
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


def test_role_bucket_and_key_come_from_the_training_stack_outputs(offline):
    # Unsigned: the stubbed client needs no credentials either.
    unsigned = Config(signature_version=UNSIGNED)
    cloudformation = boto3.client("cloudformation", region_name="eu-west-1", config=unsigned)
    outputs = {"TrainingRoleArn": ROLE, "BucketName": "stack-bucket", "DataPrefix": "data/",
               "OutputPrefix": "training-output/", "CheckpointPrefix": "checkpoints/", "CodePrefix": "code/",
               "KmsKeyArn": KEY, "TrainingImageUri": IMAGE}  # fmt: skip
    with Stubber(cloudformation) as stub:
        stub.add_response(
            "describe_stacks",
            {"Stacks": [{"StackName": "dogbreed-dev-training", "CreationTime": "2026-01-01T00:00:00Z",
                         "StackStatus": "CREATE_COMPLETE",
                         "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]},
            {"StackName": "dogbreed-dev-training"},
        )  # fmt: skip
        request = _request(["--stage", "dev", "--region", "eu-west-1", "--job-name", "j"], cloudformation)
        stub.assert_no_pending_responses()
    assert request["RoleArn"] == ROLE
    assert request["CheckpointConfig"]["S3Uri"] == "s3://stack-bucket/checkpoints/j/"
    assert request["OutputDataConfig"]["KmsKeyId"] == KEY
    assert {t["Key"]: t["Value"] for t in request["Tags"]}["stage"] == "dev"
    assert request["AlgorithmSpecification"]["TrainingImage"] == IMAGE  # the image the role is set up for


def test_the_weights_prefix_comes_from_the_training_stack_outputs(offline):
    unsigned = Config(signature_version=UNSIGNED)
    cloudformation = boto3.client("cloudformation", region_name="eu-west-1", config=unsigned)
    outputs = {"TrainingRoleArn": ROLE, "BucketName": "stack-bucket", "WeightsPrefix": "pretrained/"}
    with Stubber(cloudformation) as stub:
        stub.add_response(
            "describe_stacks",
            {"Stacks": [{"StackName": "dogbreed-dev-training", "CreationTime": "2026-01-01T00:00:00Z",
                         "StackStatus": "CREATE_COMPLETE",
                         "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]},
            {"StackName": "dogbreed-dev-training"},
        )  # fmt: skip
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
    assert "requirements.txt" in names and not any(n.startswith("tests/") for n in names)
    with tarfile.open(fileobj=io.BytesIO(launch.source_bundle(network_isolation=True))) as tar:
        assert "requirements.txt" not in tar.getnames()  # pip cannot reach PyPI without network
    # What the DLC runs: `torchrun training/sagemaker_entry.py --key value` in /opt/ml/code.
    env = {k: v for k, v in clean_env().items() if k != "PYTHONPATH"}
    proc = run_command(
        [sys.executable, "training/sagemaker_entry.py", "--help"], cwd=tmp_path / "code", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "--data-dir" in proc.stdout


def test_a_waited_job_is_followed_by_a_serve_check_of_its_artifact(offline, monkeypatch, capsys):
    from inference import check_artifact

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
