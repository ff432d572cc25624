"""The security gate: IAM invariants over every template, cdk-nag failing the synth, cfn-lint clean."""

from __future__ import annotations

import json

import pytest
from aws_cdk import Acknowledgment, App, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from cfnlint.api import lint_file

from stacks.deployment import add_security_gate

# The only actions this project grants on Resource "*", each because the service has no resource-level
# permissions for it (see the acknowledgements next to the policies).
ACTIONS_ALLOWED_ON_STAR = {
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",  # always with a cloudwatch:namespace condition
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
}
IDENTITY_POLICY_TYPES = ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy")


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def identity_statements(synth):
    for kind in synth.templates:
        for resource_type in IDENTITY_POLICY_TYPES:
            for logical_id, policy in synth.resources(kind, resource_type).items():
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                    yield f"{kind}/{logical_id}", statement


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_no_aws_managed_policy_anywhere(stages, stage):
    synth = stages[stage]
    for kind in synth.templates:
        assert "arn:aws:iam::aws:policy" not in json.dumps(synth.templates[kind])
        for role in synth.resources(kind, "AWS::IAM::Role").values():
            assert "ManagedPolicyArns" not in role["Properties"]


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_no_wildcard_actions_and_star_resources_only_where_documented(stages, stage):
    synth = stages[stage]
    statements = list(identity_statements(synth))
    assert statements
    for where, statement in statements:
        assert statement["Effect"] == "Allow", where
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{where}: wildcard action {action}"
        if "*" in as_list(statement["Resource"]):
            assert set(as_list(statement["Action"])) <= ACTIONS_ALLOWED_ON_STAR, where
            if "cloudwatch:PutMetricData" in as_list(statement["Action"]):
                assert "cloudwatch:namespace" in statement["Condition"]["StringEquals"], where


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_no_sagemaker_full_access_or_other_sagemaker_actions(stages, stage):
    """Invoke the one endpoint; register into and describe the stage's own model package group only."""
    statements = [s for _, s in identity_statements(stages[stage])]
    actions = {a for s in statements for a in as_list(s["Action"]) if a.startswith("sagemaker:")}
    registry = {"sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage"}
    assert actions - registry == {"sagemaker:InvokeEndpoint"}
    group = f"dogbreed-{stage}"
    for statement in statements:
        if set(as_list(statement["Action"])) & registry:
            for resource in as_list(statement["Resource"]):
                arn = json.dumps(resource)
                assert f":model-package/{group}/*" in arn or f':model-package-group/{group}"' in arn, arn


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_every_acknowledgement_is_on_a_resource_with_a_specific_reason(stages, stage):
    synth = stages[stage]
    acknowledged = []
    for kind in synth.templates:
        metadata = json.loads((synth.outdir / f"dogbreed-{stage}-{kind}.metadata.json").read_text())
        for path, entries in metadata.items():
            for entry in entries:
                if entry["type"] == "aws:cdk:acknowledged-rules":
                    acknowledged += [(path, rule, reason) for rule, reason in entry["data"].items()]
    assert acknowledged
    for path, rule, reason in acknowledged:
        assert path.count("/") >= 2, f"{rule} acknowledged on a whole stack ({path})"
        assert len(reason) >= 40, f"{path}: {rule} has no specific reason"
        if "IAM5" in rule:
            assert "[" in rule, f"{path}: IAM5 acknowledged for every finding instead of one"


def synth_with_gate(tmp_path, build) -> Exception | None:
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "GateTest")
    build(stack)
    add_security_gate(app)
    try:
        app.synth()
    except RuntimeError as error:
        return error
    return None


def violations(tmp_path) -> set[tuple[str, str]]:
    report = json.loads((tmp_path / "validation-report.json").read_text())
    return {
        (violation["ruleName"], construct["constructPath"])
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
    }


def test_synth_fails_on_an_unacknowledged_finding(tmp_path):
    error = synth_with_gate(tmp_path, lambda stack: sqs.Queue(stack, "PlainQueue"))
    assert error is not None and "ValidationFailed" in str(error)
    found = violations(tmp_path)
    assert ("AwsSolutions-SQS4", "GateTest/PlainQueue/Resource") in found
    assert ("Serverless-SQSRedrivePolicy", "GateTest/PlainQueue/Resource") in found


def test_an_acknowledgement_covers_only_the_finding_it_names(tmp_path):
    def build(stack):
        policy = iam.ManagedPolicy(
            stack,
            "TooWide",
            statements=[iam.PolicyStatement(actions=["s3:*"], resources=["*"])],
            roles=[iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))],
        )
        Validations.of(policy).acknowledge(
            Acknowledgment(id="AwsSolutions-IAM5[Resource::*]", reason="test: only the resource wildcard")
        )

    error = synth_with_gate(tmp_path, build)
    assert error is not None
    rules = {rule for rule, _ in violations(tmp_path)}
    assert "AwsSolutions-IAM5[Action::s3:*]" in rules
    assert "AwsSolutions-IAM5[Resource::*]" not in rules


def test_cfn_lint_is_clean_on_every_template(stages):
    """cfn-lint's Python API over every synthesized template: no error, warning or informational match."""
    problems = []
    for stage, synth in stages.items():
        for kind in synth.templates:
            template = synth.outdir / f"dogbreed-{stage}-{kind}.template.json"
            problems += [f"{template.name}: {match}" for match in lint_file(template)]
    assert problems == []
