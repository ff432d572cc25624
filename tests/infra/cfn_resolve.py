"""Resolve a synthesized template's values as CloudFormation would in one example account and region.

The templates are environment-agnostic: names, ARNs and the image URI are intrinsic functions until
deploy time. To compare them with an API's constraints they need values of the form the deployment would
produce; this resolver substitutes realistic ones (pseudo parameters, generated physical names, ARNs)
and fails on any intrinsic or resource type it does not know, so that nothing is checked as a stand-in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import botocore.session

# AWS::URLSuffix per partition
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/pseudo-parameter-reference.html).
URL_SUFFIXES = {"aws": "amazonaws.com", "aws-cn": "amazonaws.com.cn", "aws-us-gov": "amazonaws.com"}
# Stands in for the random part of a physical name CloudFormation generates.
GENERATED_SUFFIX = "A1B2C3D4E5F6"
EXAMPLE_KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


@dataclass(frozen=True)
class ExampleDeployment:
    """One stage's stacks (stack name -> template) as deployed to ``account_id`` in ``region``."""

    templates: Mapping[str, dict]
    region: str = "us-east-1"
    account_id: str = "123456789012"

    @cached_property
    def partition(self) -> str:
        return botocore.session.get_session().get_partition_for_region(self.region)

    @property
    def url_suffix(self) -> str:
        return URL_SUFFIXES[self.partition]

    def resolve(self, stack: str, value: Any) -> Any:
        """``value`` (from ``stack``'s template) with every intrinsic function replaced by its result."""
        if isinstance(value, list):
            return [self.resolve(stack, item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            [(name, argument)] = value.items()
            if name == "Ref":
                return self._ref(stack, argument)
            if name.startswith("Fn::"):
                return self._function(stack, name, argument)
        return {key: self.resolve(stack, item) for key, item in value.items()}

    def physical_name(self, stack: str, logical_id: str) -> str:
        """The name CloudFormation gives a resource whose template sets none.

        SageMaker resources get the logical id plus a random part, without the stack name
        (https://github.com/aws/aws-cli/issues/4021); others ``stack-logicalId-random`` (the "Name type",
        https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-name.html).
        """
        if self._resource(stack, logical_id)["Type"].startswith("AWS::SageMaker::"):
            return f"{logical_id}-{GENERATED_SUFFIX}"
        return f"{stack}-{logical_id}-{GENERATED_SUFFIX}"

    # --- intrinsics ---------------------------------------------------------------------------------------

    def _function(self, stack: str, name: str, argument: Any) -> Any:
        if name == "Fn::Join":
            separator, items = argument
            return separator.join(str(item) for item in self.resolve(stack, items))
        if name == "Fn::FindInMap":
            mapping, key, attribute = self.resolve(stack, argument)
            return self.templates[stack]["Mappings"][mapping][key][attribute]
        if name == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self._attribute(stack, logical_id, attribute)
        if name == "Fn::Select":
            index, items = self.resolve(stack, argument)
            return items[int(index)]
        if name == "Fn::Sub" and isinstance(argument, str):
            return _SUB_VARIABLE.sub(lambda m: str(self._sub_variable(stack, m.group(1))), argument)
        if name == "Fn::GetStackOutput":  # a weak cross-stack reference: the other stack's output
            # The stage's stacks deploy together into one region; a pinned other region reads a stack
            # that is not there.
            region = self.resolve(stack, argument.get("Region", self.region))
            if region != self.region:
                raise ValueError(f"{stack}: reads {argument['StackName']} in {region}, not in {self.region}")
            return self._output(argument["StackName"], argument["OutputName"])
        if name == "Fn::ImportValue":
            export = self.resolve(stack, argument)
            for other, template in self.templates.items():
                for output_name, output in template.get("Outputs", {}).items():
                    if self.resolve(other, output.get("Export", {}).get("Name")) == export:
                        return self._output(other, output_name)
            raise KeyError(f"no stack exports {export!r}")
        raise NotImplementedError(f"{stack}: intrinsic {name} {argument!r}")

    def _sub_variable(self, stack: str, name: str) -> Any:
        if "." in name:
            return self._attribute(stack, *name.split(".", 1))
        return self._ref(stack, name)

    def _output(self, stack: str, output_name: str) -> Any:
        return self.resolve(stack, self.templates[stack]["Outputs"][output_name]["Value"])

    def _ref(self, stack: str, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": self.url_suffix,
            "AWS::StackName": stack,
        }
        if name in pseudo:
            return pseudo[name]
        kind = self._resource(stack, name)["Type"]
        # What Ref returns per type (each type's "Return values" in the CloudFormation template reference).
        if kind == "AWS::CloudWatch::Alarm":
            return self._property(stack, name, "AlarmName") or self.physical_name(stack, name)
        if kind == "AWS::IAM::Role":
            return self._property(stack, name, "RoleName") or self.physical_name(stack, name)
        if kind == "AWS::KMS::Key":
            return EXAMPLE_KEY_ID
        raise NotImplementedError(f"{stack}: Ref to {kind} {name}")

    def _attribute(self, stack: str, logical_id: str, attribute: str) -> Any:
        kind = self._resource(stack, logical_id)["Type"]
        if (kind, attribute) == ("AWS::IAM::Role", "Arn"):
            path = self._property(stack, logical_id, "Path") or "/"
            return f"arn:{self.partition}:iam::{self.account_id}:role{path}{self._ref(stack, logical_id)}"
        if (kind, attribute) == ("AWS::KMS::Key", "Arn"):
            return f"arn:{self.partition}:kms:{self.region}:{self.account_id}:key/{EXAMPLE_KEY_ID}"
        if (kind, attribute) == ("AWS::SageMaker::Model", "ModelName"):
            return self._property(stack, logical_id, "ModelName") or self.physical_name(stack, logical_id)
        if (kind, attribute) == ("AWS::SageMaker::EndpointConfig", "EndpointConfigName"):
            name = self._property(stack, logical_id, "EndpointConfigName")
            return name or self.physical_name(stack, logical_id)
        if (kind, attribute) == ("AWS::SageMaker::Endpoint", "EndpointName"):
            return self._property(stack, logical_id, "EndpointName") or self.physical_name(stack, logical_id)
        raise NotImplementedError(f"{stack}: GetAtt {kind} {logical_id}.{attribute}")

    def _property(self, stack: str, logical_id: str, name: str) -> Any:
        """One property of a resource, resolved; None when the template leaves it to CloudFormation."""
        return self.resolve(stack, self._resource(stack, logical_id).get("Properties", {}).get(name))

    def _resource(self, stack: str, logical_id: str) -> dict:
        return self.templates[stack]["Resources"][logical_id]


def stage_deployment(
    synth: Any, region: str = "us-east-1", account_id: str = "123456789012"
) -> ExampleDeployment:
    """A ``SynthesizedStage``'s stacks under the names ``add_stage`` gives them."""
    templates = {
        f"{synth.config.stack_prefix}-{kind}": template for kind, template in synth.templates.items()
    }
    return ExampleDeployment(templates, region=region, account_id=account_id)
