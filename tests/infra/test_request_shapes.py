"""The SageMaker requests the stacks and the launcher make are valid for the API, its limits included.

CloudFormation turns a resource's properties into the service's Create/Update call, and the service checks
that call's lengths, ranges, enums and patterns only then, mid-deploy; botocore's model holds the same
constraints (service_model checks them offline). Each stage's Model, EndpointConfig and Endpoint become
the calls CloudFormation makes, with realistic values for the intrinsics (cfn_resolve); the launcher's
CreateTrainingJob request is checked the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from .cfn_resolve import stage_deployment
from .conftest import SynthesizedStage, synth_stage
from .service_model import check_request, compile_pattern, service_model

# The calls CloudFormation makes per resource type, each with the property that names the resource and the
# properties that are no member of that call: the endpoint's Retain*/Exclude* options belong to
# UpdateEndpoint only, and UpdateEndpoint changes tags through AddTags/DeleteTags instead.
UPDATE_ONLY = ("RetainAllVariantProperties", "ExcludeRetainedVariantProperties", "RetainDeploymentConfig")
CALLS = {
    "AWS::SageMaker::Model": [("CreateModel", "ModelName", ())],
    "AWS::SageMaker::EndpointConfig": [("CreateEndpointConfig", "EndpointConfigName", ())],
    # CloudFormation creates the component, then applies a new model with UpdateInferenceComponent, the one
    # call that takes the rolling-update DeploymentConfig.
    "AWS::SageMaker::InferenceComponent": [
        ("CreateInferenceComponent", "InferenceComponentName", ("DeploymentConfig",)),
        ("UpdateInferenceComponent", "InferenceComponentName", ("EndpointName", "VariantName", "Tags")),
    ],
    "AWS::SageMaker::Endpoint": [
        ("CreateEndpoint", "EndpointName", UPDATE_ONLY),
        ("UpdateEndpoint", "EndpointName", ("Tags",)),
    ],
}
OPERATIONS = {operation for calls in CALLS.values() for operation, _, _ in calls}
VARIANTS = ("dev", "prod", "serverless", "cpu_instance")


def sagemaker_requests(synth: SynthesizedStage, region: str = "us-east-1") -> dict[str, dict[str, Any]]:
    """Operation -> the request CloudFormation sends for the serving stack's one resource of that type."""
    deployment = stage_deployment(synth, region=region)
    stack = f"{synth.config.stack_prefix}-serving"
    requests: dict[str, dict[str, Any]] = {}
    for logical_id, resource in synth.templates["serving"]["Resources"].items():
        for operation, name_property, not_members in CALLS.get(resource["Type"], ()):
            assert operation not in requests, f"a second {resource['Type']}: {logical_id}"
            properties = deployment.resolve(stack, resource["Properties"])
            request = {name_property: deployment.physical_name(stack, logical_id), **properties}
            requests[operation] = {k: v for k, v in request.items() if k not in not_members}
    return requests


@pytest.fixture(scope="module")
def serverless(tmp_path_factory) -> SynthesizedStage:
    return synth_stage(
        tmp_path_factory.mktemp("shapes-serverless"),
        "dev",
        serving_mode="serverless",
        inference_image_tag="2.6.0-cpu-py312",
        lambda_provisioned_concurrency=0,
        lambda_provisioned_concurrency_max=0,
    )


@pytest.fixture(scope="module")
def cpu_instance(tmp_path_factory) -> SynthesizedStage:
    """An instance type without local NVMe (so the config has a volume KmsKeyId) and data capture on."""
    return synth_stage(
        tmp_path_factory.mktemp("shapes-cpu"),
        "dev",
        serving_mode="instance",
        instance_type="ml.m5.large",
        inference_image_tag="2.6.0-cpu-py312",
        data_capture_enabled=True,
    )


@pytest.fixture(params=VARIANTS)
def variant(request) -> SynthesizedStage:
    return request.getfixturevalue(request.param)


def assert_valid(operation: str, request: dict[str, Any]) -> None:
    check = check_request(operation, request)
    assert check.errors == [], f"{operation}: {check.errors}"
    assert check.skipped == [], f"{operation}: patterns not checked: {check.skipped}"
    assert check.patterns_checked > 0


# --- the stacks --------------------------------------------------------------------------------------------


def test_every_sagemaker_call_of_the_stage_is_valid_for_the_api(variant):
    requests = sagemaker_requests(variant)
    # The inference component exists only in that serving mode (dev's default).
    component = {"CreateInferenceComponent", "UpdateInferenceComponent"}
    expected = OPERATIONS if variant.config.is_inference_component else OPERATIONS - component
    assert set(requests) == expected
    for operation, request in requests.items():
        assert_valid(operation, request)


def test_the_variants_cover_what_the_config_can_switch(stages, serverless, cpu_instance):
    # Each optional part of the requests is validated by at least one variant above.
    configs = [
        sagemaker_requests(s)["CreateEndpointConfig"] for s in (*stages.values(), serverless, cpu_instance)
    ]
    variants = [config["ProductionVariants"][0] for config in configs]
    assert any("ServerlessConfig" in v for v in variants) and any("InstanceType" in v for v in variants)
    assert any("KmsKeyId" in config for config in configs)
    assert any("DataCaptureConfig" in config for config in configs)
    assert any("ManagedInstanceScaling" in v for v in variants)  # dev: inference_component
    routing = [
        sagemaker_requests(s)["UpdateEndpoint"]["DeploymentConfig"]["BlueGreenUpdatePolicy"]
        for s in (stages["prod"], cpu_instance)
    ]
    assert {r["TrafficRoutingConfiguration"]["Type"] for r in routing} == {"ALL_AT_ONCE", "CANARY"}


@pytest.mark.parametrize(
    ("region", "partition", "url_suffix"),
    [("us-east-1", "aws", "amazonaws.com"), ("cn-northwest-1", "aws-cn", "amazonaws.com.cn")],
)
def test_calls_are_valid_in_each_partition(dev, region, partition, url_suffix):
    requests = sagemaker_requests(dev, region=region)
    model = requests["CreateModel"]
    assert model["ExecutionRoleArn"].startswith(f"arn:{partition}:iam::")
    assert f".dkr.ecr.{region}.{url_suffix}/" in model["PrimaryContainer"]["Image"]
    for operation, request in requests.items():
        assert_valid(operation, request)


# --- the validator catches what botocore lets through ------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """Set ``value`` at a dotted path of the request; ``[0]`` indexes a list."""

    def mutate(request: dict) -> None:
        *parents, last = path.split(".")
        node: Any = request
        for part in parents:
            node = node[0] if part == "[0]" else node[part]
        node[last] = value

    return mutate


def _delete(key: str) -> Callable[[dict], None]:
    return lambda request: request.pop(key)


BLUE_GREEN = "DeploymentConfig.BlueGreenUpdatePolicy"
ROUTING = f"{BLUE_GREEN}.TrafficRoutingConfiguration"
VARIANT = "ProductionVariants.[0]"


def case(case_id: str, operation: str, mutate: Callable[[dict], None], error: str):
    return pytest.param(operation, mutate, error, id=case_id)


@pytest.mark.parametrize(
    ("operation", "mutate", "error"),
    [
        # The pattern lets hyphens repeat, so only the maximum length rejects this one.
        case(
            "name-too-long",
            "UpdateEndpoint",
            _set("EndpointName", "dogbreed" + "-" * 55 + "x"),
            "UpdateEndpoint.EndpointName: length 64 is above the maximum 63",
        ),
        case(
            "bad-enum",
            "UpdateEndpoint",
            _set(f"{ROUTING}.Type", "LINEAR_WRONG"),
            f"UpdateEndpoint.{ROUTING}.Type: 'LINEAR_WRONG' is not one of",
        ),
        case(
            "integer-above-max",
            "UpdateEndpoint",
            _set(f"{ROUTING}.WaitIntervalInSeconds", 3601),
            f"UpdateEndpoint.{ROUTING}.WaitIntervalInSeconds: value 3601 is above the maximum 3600",
        ),
        case(
            "integer-below-min",
            "CreateEndpoint",
            _set(f"{BLUE_GREEN}.MaximumExecutionTimeoutInSeconds", 599),
            f"CreateEndpoint.{BLUE_GREEN}.MaximumExecutionTimeoutInSeconds: value 599 is below",
        ),
        case(
            "pattern",
            "CreateModel",
            _set("ModelName", "dogbreed_model"),
            "CreateModel.ModelName: 'dogbreed_model' does not match",
        ),
        case(
            "list-too-long",
            "CreateModel",
            _set("Tags", [{"Key": f"k{i}", "Value": "v"} for i in range(51)]),
            "CreateModel.Tags: length 51 is above the maximum 50",
        ),
        # Tag patterns use Java's Unicode classes (\p{L}): only the regex fallback can check them.
        case(
            "java-only-pattern",
            "CreateModel",
            _set("Tags", [{"Key": "cost#centre", "Value": "v"}]),
            "CreateModel.Tags[0].Key: 'cost#centre' does not match",
        ),
        case(
            "map-too-large",
            "CreateModel",
            _set("PrimaryContainer.Environment", {f"V{i}": "1" for i in range(101)}),
            "CreateModel.PrimaryContainer.Environment: entries 101 is above the maximum 100",
        ),
        case(
            "required",
            "CreateEndpointConfig",
            _delete("ProductionVariants"),
            "CreateEndpointConfig.ProductionVariants: required",
        ),
        case(
            "unknown-member",  # the API calls it InitialInstanceCount
            "CreateEndpointConfig",
            _set(f"{VARIANT}.InstanceCount", 2),
            "CreateEndpointConfig.ProductionVariants[0].InstanceCount: unknown member",
        ),
        case(
            "type",
            "CreateEndpointConfig",
            _set(f"{VARIANT}.InitialInstanceCount", "2"),
            "CreateEndpointConfig.ProductionVariants[0].InitialInstanceCount: expected an integer",
        ),
        case(
            "instance-type",
            "CreateEndpointConfig",
            _set(f"{VARIANT}.InstanceType", "ml.g4dn.huge"),
            "CreateEndpointConfig.ProductionVariants[0].InstanceType: 'ml.g4dn.huge' is not one of",
        ),
    ],
)
def test_validator_rejects_a_request_the_api_would_reject(prod, operation, mutate, error):
    request = copy.deepcopy(sagemaker_requests(prod)[operation])
    mutate(request)
    errors = check_request(operation, request).errors
    assert len(errors) == 1 and errors[0].startswith(error), errors


def test_the_patterns_the_requests_rely_on_compile():
    # Every pattern reachable from the calls above compiles (the requests are then checked against each);
    # the few the model has that neither re nor regex accepts (a UTF-16 surrogate range) lie elsewhere.
    model = service_model()
    reachable: set[str] = set()

    def walk(shape, seen: set[str]) -> None:
        if shape.name in seen:
            return
        seen.add(shape.name)
        if "pattern" in shape.metadata:
            reachable.add(shape.metadata["pattern"])
        children = {
            "structure": lambda: shape.members.values(),
            "list": lambda: [shape.member],
            "map": lambda: [shape.key, shape.value],
        }.get(shape.type_name, list)()
        for child in children:
            walk(child, seen)

    for operation in (*OPERATIONS, "CreateTrainingJob"):
        walk(model.operation_model(operation).input_shape, set())
    assert reachable
    assert [p for p in reachable if compile_pattern(p) is None] == []


# --- the training launcher ---------------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No credentials and no config files: the dry run must not need any (as in tests/training)."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class StackOutputs:
    """cloudformation.describe_stacks answering for one stack with its synthesized, resolved outputs."""

    def __init__(self, stack_name: str, outputs: dict[str, str]) -> None:
        self.stack_name, self.outputs = stack_name, outputs

    def describe_stacks(self, StackName: str) -> dict:
        assert StackName == self.stack_name, "the launcher reads another stack than the CDK app deploys"
        outputs = [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]
        return {"Stacks": [{"StackName": StackName, "Outputs": outputs}]}


def training_request(argv: list[str], cloudformation: Any = None) -> dict[str, Any]:
    from training import launch

    return launch.build_request(launch.plan(launch.build_parser_launch().parse_args(argv), cloudformation))


ROLE = "arn:aws:iam::111122223333:role/dogbreed-dev-training"
KEY = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
FLAGS = ["--role-arn", ROLE, "--bucket", "dogbreed-dev-data", "--region", "eu-west-1", "--kms-key-arn", KEY]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(FLAGS, id="defaults-spot-g4dn"),
        pytest.param(
            [
                *FLAGS,
                "--instance-type",
                "ml.p3.2xlarge",
                "--instance-count",
                "4",
                "--no-spot",
                "--network-isolation",
                "--weights-s3-uri",
                "s3://dogbreed-dev-data/weights/resnet50.pth",
            ],
            id="isolated-ebs-volume-key",
        ),
    ],
)
def test_launcher_training_request_is_valid_for_the_api(offline, argv):
    assert_valid("CreateTrainingJob", training_request(argv))


def test_launcher_request_from_the_training_stack_outputs_is_valid_for_the_api(offline, dev):
    deployment = stage_deployment(dev, region="eu-west-1")
    stack = f"{dev.config.stack_prefix}-training"
    outputs = {
        name: deployment.resolve(stack, output["Value"])
        for name, output in dev.templates["training"]["Outputs"].items()
    }
    request = training_request(["--stage", "dev", "--region", "eu-west-1"], StackOutputs(stack, outputs))
    assert request["AlgorithmSpecification"]["TrainingImage"] == outputs["TrainingImageUri"]
    assert request["RoleArn"] == outputs["TrainingRoleArn"]
    assert_valid("CreateTrainingJob", request)
