"""Validate an API request against botocore's service model, constraints included.

botocore's own ``ParamValidator`` checks required members, unknown members, types and ``min`` only: it
stopped checking ``max`` so that old clients keep working when a service relaxes a limit
(https://github.com/boto/botocore/pull/779, https://github.com/boto/botocore/issues/1845), and it never
checks ``enum`` or ``pattern``. The service does, at call time, which for a CloudFormation template means
mid-deploy. This validator checks all of them offline.

Patterns are written for Java's regex engine and botocore ships them without the ``^...$`` anchors the API
reference shows (e.g. EndpointName ``^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``,
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateEndpoint.html), so a value must match
a pattern in full. Python's ``re`` compiles almost all of them; the rest use Java's Unicode classes
(``\\p{L}``, ``\\p{Alnum}``: tag keys and values among them), which the ``regex`` package (pinned in
requirements-dev.txt) understands. A pattern neither compiles is skipped and recorded in ``skipped``, so a
test can require that every pattern its requests met was really checked.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import botocore.session
import regex
from botocore.model import ServiceModel, Shape


@cache
def service_model(service: str = "sagemaker") -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


@cache
def compile_pattern(pattern: str) -> re.Pattern | None:
    """The pattern compiled for a full match, or None when neither ``re`` nor ``regex`` accepts it."""
    try:
        return re.compile(pattern)
    except re.error:
        pass
    try:
        return regex.compile(pattern, regex.V0)
    except regex.error:
        return None


@dataclass
class RequestCheck:
    """The result of one request: errors as ``path: message``, and the patterns that could not be checked."""

    operation: str
    errors: list[str] = field(default_factory=list)
    # (path, pattern) of every string whose pattern could not be compiled, hence was not checked.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # How many strings were matched against a pattern: a check that matched nothing proves little.
    patterns_checked: int = 0


def check_request(operation: str, params: Mapping[str, Any], service: str = "sagemaker") -> RequestCheck:
    """Check ``params`` (the API request, as boto3 would take it) against ``operation``'s input shape."""
    result = RequestCheck(operation)
    _check(service_model(service).operation_model(operation).input_shape, params, operation, result)
    return result


def _check(shape: Shape, value: Any, path: str, result: RequestCheck) -> None:
    kind = shape.type_name
    if kind == "structure":
        _check_structure(shape, value, path, result)
    elif kind == "list":
        if not isinstance(value, list | tuple):
            result.errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        _check_range(shape, len(value), path, "length", result)
        for index, item in enumerate(value):
            _check(shape.member, item, f"{path}[{index}]", result)
    elif kind == "map":
        if not isinstance(value, Mapping):
            result.errors.append(f"{path}: expected a map, got {type(value).__name__}")
            return
        _check_range(shape, len(value), path, "entries", result)
        for key, item in value.items():
            _check(shape.key, key, f"{path} key {key!r}", result)
            _check(shape.value, item, f"{path}[{key!r}]", result)
    elif kind == "string":
        _check_string(shape, value, path, result)
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            result.errors.append(f"{path}: expected an integer, got {value!r}")
            return
        _check_range(shape, value, path, "value", result)
    elif kind in ("float", "double"):
        # botocore (and the JSON protocol) take an int where a number is modelled.
        if isinstance(value, bool) or not isinstance(value, int | float):
            result.errors.append(f"{path}: expected a number, got {value!r}")
            return
        _check_range(shape, value, path, "value", result)
    elif kind == "boolean":
        if not isinstance(value, bool):
            result.errors.append(f"{path}: expected true or false, got {value!r}")
    elif kind == "timestamp":
        if not isinstance(value, datetime.datetime | str | int | float) or isinstance(value, bool):
            result.errors.append(f"{path}: expected a timestamp, got {value!r}")
    elif kind == "blob":
        if not isinstance(value, bytes | bytearray | str):
            result.errors.append(f"{path}: expected bytes, got {type(value).__name__}")
            return
        _check_range(shape, len(value), path, "length", result)
    else:
        raise NotImplementedError(f"{path}: shape type {kind!r}")


def _check_structure(shape: Shape, value: Any, path: str, result: RequestCheck) -> None:
    if not isinstance(value, Mapping):
        result.errors.append(f"{path}: expected a structure, got {type(value).__name__}")
        return
    members = shape.members
    for name in shape.required_members:
        if value.get(name) is None:
            result.errors.append(f"{path}.{name}: required")
    for name in sorted(set(value) - set(members)):
        result.errors.append(f"{path}.{name}: unknown member (allowed: {', '.join(members)})")
    present = [name for name in value if name in members and value[name] is not None]
    if shape.is_tagged_union and len(present) != 1:
        result.errors.append(f"{path}: a union takes exactly one member (got {present})")
    for name in value:
        if name in members:
            if value[name] is None:  # boto3 would send null; the service rejects it
                result.errors.append(f"{path}.{name}: null")
            else:
                _check(members[name], value[name], f"{path}.{name}", result)


def _check_string(shape: Shape, value: Any, path: str, result: RequestCheck) -> None:
    if not isinstance(value, str):
        result.errors.append(f"{path}: expected a string, got {value!r}")
        return
    _check_range(shape, len(value), path, "length", result)
    if shape.enum and value not in shape.enum:
        result.errors.append(f"{path}: {value!r} is not one of {', '.join(shape.enum)}")
    pattern = shape.metadata.get("pattern")
    if pattern is None:
        return
    compiled = compile_pattern(pattern)
    if compiled is None:
        result.skipped.append((path, pattern))
        return
    result.patterns_checked += 1
    if not compiled.fullmatch(value):
        result.errors.append(f"{path}: {value!r} does not match {pattern!r}")


def _check_range(shape: Shape, measure: float, path: str, what: str, result: RequestCheck) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and measure < low:
        result.errors.append(f"{path}: {what} {measure} is below the minimum {low}")
    if high is not None and measure > high:
        result.errors.append(f"{path}: {what} {measure} is above the maximum {high}")
