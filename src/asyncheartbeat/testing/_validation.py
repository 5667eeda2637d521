"""Requests checked against botocore's own datapipeline model, answered as AWS answers.

A value of the wrong JSON type is a SerializationException; a value that breaks a limit
(null where required, length, pattern, enum, range) is a ValidationException listing every
broken constraint in AWS's words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asyncheartbeat._log import shorten
from asyncheartbeat._model import service_model, string_shape

from ._errors import ServiceError

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "structure": (dict,),
    "map": (dict,),
    "list": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "long": (int,),
    "timestamp": (int, float, str),
    "double": (int, float),
    "float": (int, float),
}


def operation_names() -> frozenset[str]:
    return frozenset(service_model()["operations"])


def validate_request(operation: str, params: dict[str, Any]) -> None:
    """Raise the service's error for a request that the model does not allow."""
    shape_name = service_model()["operations"][operation]["input"]["shape"]
    problems: list[str] = []
    _check(params, shape_name, "", problems)
    if problems:
        count = len(problems)
        raise ServiceError(
            "ValidationException",
            f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(problems),
        )


def _check(value: Any, shape_name: str, path: str, problems: list[str]) -> None:
    shape = service_model()["shapes"][shape_name]
    kind = shape["type"]
    if not _is_json_type(value, kind):
        where = f" at '{path}'" if path else ""
        raise ServiceError(
            "SerializationException",
            f"expected a {kind}{where}, got {type(value).__name__} {shorten(str(value), 60)}",
        )
    check = _CHECKS.get(kind)
    if check is not None:
        check(value, shape_name, shape, path, problems)


def _is_json_type(value: Any, kind: str) -> bool:
    if kind in ("integer", "long") and isinstance(value, bool):
        return False
    return isinstance(value, _JSON_TYPES.get(kind, (object,)))


def _check_structure(
    value: Any, name: str, shape: dict[str, Any], path: str, problems: list[str]
) -> None:
    for member in shape.get("required", ()):
        if value.get(member) is None:
            problems.append(_violation(None, _join(path, member), "Member must not be null"))
    for member, spec in shape["members"].items():
        if value.get(member) is not None:
            _check(value[member], spec["shape"], _join(path, member), problems)


def _check_list(
    value: Any, name: str, shape: dict[str, Any], path: str, problems: list[str]
) -> None:
    _check_length(value, shape, path, problems)
    for index, item in enumerate(value, start=1):
        _check(item, shape["member"]["shape"], f"{path}.{index}.member", problems)


def _check_map(
    value: Any, name: str, shape: dict[str, Any], path: str, problems: list[str]
) -> None:
    _check_length(value, shape, path, problems)
    for key, item in value.items():
        _check(key, shape["key"]["shape"], f"{path}.key", problems)
        _check(item, shape["value"]["shape"], f"{path}.{key}.value", problems)


def _check_string(
    value: Any, name: str, shape: dict[str, Any], path: str, problems: list[str]
) -> None:
    _check_length(value, shape, path, problems)
    if "enum" in shape and value not in shape["enum"]:
        rule = f"Member must satisfy enum value set: [{', '.join(shape['enum'])}]"
        problems.append(_violation(value, path, rule))
    pattern = string_shape(name).pattern
    if pattern is not None and not pattern.fullmatch(value):
        rule = f"Member must satisfy regular expression pattern: {shape['pattern']}"
        problems.append(_violation(value, path, rule))


def _check_number(
    value: Any, name: str, shape: dict[str, Any], path: str, problems: list[str]
) -> None:
    if "min" in shape and value < shape["min"]:
        rule = f"Member must have value greater than or equal to {shape['min']}"
        problems.append(_violation(value, path, rule))
    if "max" in shape and value > shape["max"]:
        rule = f"Member must have value less than or equal to {shape['max']}"
        problems.append(_violation(value, path, rule))


_CHECKS: dict[str, Callable[[Any, str, dict[str, Any], str, list[str]], None]] = {
    "structure": _check_structure,
    "list": _check_list,
    "map": _check_map,
    "string": _check_string,
    "integer": _check_number,
    "long": _check_number,
}


def _check_length(value: Any, shape: dict[str, Any], path: str, problems: list[str]) -> None:
    if "min" in shape and len(value) < shape["min"]:
        rule = f"Member must have length greater than or equal to {shape['min']}"
        problems.append(_violation(value, path, rule))
    if "max" in shape and len(value) > shape["max"]:
        rule = f"Member must have length less than or equal to {shape['max']}"
        problems.append(_violation(value, path, rule))


def _violation(value: Any, path: str, rule: str) -> str:
    shown = "null" if value is None else f"'{shorten(str(value), 60)}'"
    return f"Value {shown} at '{path}' failed to satisfy constraint: {rule}"


def _join(path: str, member: str) -> str:
    return f"{path}.{member}" if path else member
