"""The progress fields a heartbeat carries, checked against the model before any call."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, TypeAlias

from ._log import shorten
from ._model import member_shape

#: One field as the API takes it: ``{"key": k, "stringValue": v}`` or ``{"key": k, "refValue": v}``.
WireField: TypeAlias = Mapping[str, str]
FieldsInput: TypeAlias = Iterable[WireField] | Mapping[str, str]
ValueKind: TypeAlias = Literal["stringValue", "refValue"]

_VALUE_KINDS: tuple[ValueKind, ValueKind] = ("stringValue", "refValue")

# The service's limits on one pipeline object, which the reported fields are kept on (AWS
# Data Pipeline developer guide, "AWS Data Pipeline Limits"); botocore's model has only the
# limits of each field.
MAX_FIELDS = 50
MAX_OBJECT_BYTES = 15_360


def check_task_id(task_id: object) -> str:
    """Return ``task_id`` if the service would accept it, else raise naming the problem."""
    return check_member("ReportTaskProgressInput", "taskId", task_id, name="task_id")


def check_member(structure: str, member: str, value: object, *, name: str) -> str:
    """Return ``value`` if the service would accept it as ``structure.member``, else raise
    naming it ``name`` (the caller's word for it) and the problem."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if problem := member_shape(structure, member).problem(value):
        raise ValueError(f"{name} {shorten(value, 40)!r} {problem}")
    return value


def check_field(key: object, kind: ValueKind, value: object) -> tuple[str, str]:
    """Check one field's key and value against the model's ``Field`` shape."""
    if not isinstance(key, str):
        raise TypeError(f"field key must be a str, not {type(key).__name__}")
    if problem := member_shape("Field", "key").problem(key):
        raise ValueError(f"field key {shorten(key, 40)!r} {problem}")
    if not isinstance(value, str):
        raise TypeError(f"{kind} of field {key!r} must be a str, not {type(value).__name__}")
    if problem := member_shape("Field", kind).problem(value):
        raise ValueError(f"{kind} of field {key!r} {problem}")
    return key, value


def _size(key: str, value: str) -> int:
    return len(key.encode("utf-8", "surrogatepass")) + len(value.encode("utf-8", "surrogatepass"))


class ProgressFields:
    """The fields the next report carries, with a version that changes whenever they do."""

    __slots__ = ("_bytes", "_fields", "_wire", "version")

    def __init__(self, initial: FieldsInput | None = None) -> None:
        self._fields: dict[str, tuple[ValueKind, str]] = {}
        self._wire: list[dict[str, str]] | None = None
        self._bytes = 0  # UTF-8 bytes of all keys and values
        self.version = 0
        if initial is not None:
            self._load(initial)

    def _load(self, initial: FieldsInput) -> None:
        if isinstance(initial, str | bytes):
            raise TypeError("fields must be a list of field dicts or a mapping, not a string")
        if isinstance(initial, Mapping):
            for key, value in initial.items():
                self._add_new(*check_field(key, "stringValue", value), "stringValue")
            return
        for index, field in enumerate(initial):
            if not isinstance(field, Mapping):
                raise TypeError(f"fields[{index}] must be a dict, not {type(field).__name__}")
            unknown = set(field) - {"key", *_VALUE_KINDS}
            if unknown:
                raise ValueError(f"fields[{index}] has unknown members {sorted(unknown)}")
            if "key" not in field:
                raise ValueError(f"fields[{index}] has no 'key'")
            kinds = [kind for kind in _VALUE_KINDS if kind in field]
            if len(kinds) != 1:
                raise ValueError(
                    f"field {field['key']!r} must have exactly one of stringValue and refValue"
                )
            kind = kinds[0]
            self._add_new(*check_field(field["key"], kind, field[kind]), kind)

    def _add_new(self, key: str, value: str, kind: ValueKind) -> None:
        if key in self._fields:
            raise ValueError(f"field key {key!r} is given twice")
        self._put(key, kind, value)

    def set(self, key: str, kind: ValueKind, value: str) -> None:
        key, value = check_field(key, kind, value)
        if self._fields.get(key) != (kind, value):
            self._put(key, kind, value)
            self._changed()

    def remove(self, key: str) -> None:
        if (old := self._fields.pop(key, None)) is not None:
            self._bytes -= _size(key, old[1])
            self._changed()

    def _put(self, key: str, kind: ValueKind, value: str) -> None:
        """Store a checked field, unless the report would exceed what the service keeps."""
        old = self._fields.get(key)
        count = len(self._fields) + (old is None)
        size = self._bytes - (_size(key, old[1]) if old else 0) + _size(key, value)
        if count > MAX_FIELDS:
            raise ValueError(
                f"field {key!r} would be field {count} of the report, more than the "
                f"{MAX_FIELDS} the service keeps on one object: remove one first"
            )
        if size > MAX_OBJECT_BYTES:
            raise ValueError(
                f"field {key!r} would make the report's fields {size} UTF-8 bytes, more than "
                f"the {MAX_OBJECT_BYTES} the service keeps on one object"
            )
        self._fields[key] = (kind, value)
        self._bytes = size

    def _changed(self) -> None:
        self.version += 1
        self._wire = None

    def wire(self) -> list[dict[str, str]]:
        """The fields in the API's shape; the same list object until they change."""
        if self._wire is None:
            self._wire = [{"key": key, kind: value} for key, (kind, value) in self._fields.items()]
        return self._wire

    def as_dict(self) -> dict[str, tuple[ValueKind, str]]:
        return dict(self._fields)
