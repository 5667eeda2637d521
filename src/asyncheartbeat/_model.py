"""Limits of the Data Pipeline wire model, read from botocore's own service model."""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any


@dataclasses.dataclass(frozen=True)
class StringShape:
    """A string shape's length limits and pattern, as the service enforces them."""

    name: str
    min_length: int
    max_length: int | None
    pattern: re.Pattern[str] | None

    def problem(self, value: str) -> str | None:
        """Say what is wrong with ``value`` for this shape, or None when it fits."""
        if len(value) < self.min_length:
            return (
                "must not be empty"
                if self.min_length == 1
                else (f"must have at least {self.min_length} characters")
            )
        if self.max_length is not None and len(value) > self.max_length:
            return f"has {len(value)} characters, more than the {self.max_length} allowed"
        if self.pattern is not None and (bad := _first_mismatch(self.pattern, value)) is not None:
            return f"contains {value[bad]!r} at index {bad}, which the service does not accept"
        return None


def _first_mismatch(pattern: re.Pattern[str], value: str) -> int | None:
    if pattern.fullmatch(value):
        return None
    # The model's patterns are single character classes repeated: find the first offender.
    return next((i for i, char in enumerate(value) if not pattern.fullmatch(char)), 0)


def python_pattern(model_pattern: str) -> str:
    r"""Translate a model pattern written for UTF-16 strings into one for code points.

    The model writes astral characters as surrogate pairs (``\uD800\uDC00-\uDBFF\uDFFF``);
    Python strings hold code points, so the pairs are joined into ``\U00010000-\U0010FFFF``.
    """
    escaped = re.sub(
        r"\\u([0-9A-Fa-f]{4})", lambda m: re.escape(chr(int(m.group(1), 16))), model_pattern
    )
    return escaped.encode("utf-16-le", "surrogatepass").decode("utf-16-le")


@functools.cache
def service_model() -> dict[str, Any]:
    """botocore's datapipeline model, as loaded from the installed botocore."""
    # Imported here: loading it costs a few hundred ms, paid once and only when needed.
    from botocore.loaders import create_loader  # noqa: PLC0415

    model: dict[str, Any] = create_loader().load_service_model("datapipeline", "service-2")
    return model


@functools.cache
def string_shape(name: str) -> StringShape:
    """The named string shape of botocore's datapipeline model."""
    shape = service_model()["shapes"][name]
    if shape["type"] != "string":
        raise LookupError(f"shape {name!r} is a {shape['type']}, not a string")
    pattern = shape.get("pattern")
    return StringShape(
        name=name,
        min_length=shape.get("min", 0),
        max_length=shape.get("max"),
        pattern=re.compile(python_pattern(pattern), re.DOTALL) if pattern else None,
    )


def member_shape(structure: str, member: str) -> StringShape:
    """The string shape of ``structure.member`` in the model."""
    members = service_model()["shapes"][structure]["members"]
    return string_shape(members[member]["shape"])
