"""A typed view of the task object PollForTask hands out."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ._log import shorten
from ._model import member_shape


@dataclasses.dataclass(frozen=True, slots=True)
class PipelineObject:
    """One pipeline object of a task: the activity, its attempt, what they refer to.

    ``strings`` and ``refs`` keep string and reference values apart. A key the object lists
    more than once (a list, such as several ``input`` refs) maps to its last value there;
    `values` gives them all.

    Attributes:
        id: The object's id, such as ``"Copy"`` or ``"@Copy_2026-11-22T19:15:58_Attempt=1"``.
        name: Its name (its id when the service sent none).
        strings: Its ``stringValue`` fields, ``{key: value}`` (read-only).
        refs: Its ``refValue`` fields, ``{key: object id}`` (read-only).
        fields: Every field in the order the object lists them, as ``(key, kind, value)``
            with ``kind`` ``"stringValue"`` or ``"refValue"``.
    """

    id: str
    name: str
    strings: Mapping[str, str]
    refs: Mapping[str, str]
    fields: tuple[tuple[str, str, str], ...]  # (key, "stringValue" | "refValue", value)

    def values(self, key: str) -> list[str]:
        """Every value of ``key``, string or ref, in the order the object lists them.

        Args:
            key: The field's key, such as ``"scriptArgument"``.

        Returns:
            The values; empty if the object has no such field.
        """
        return [value for field_key, _, value in self.fields if field_key == key]

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> PipelineObject:
        """Read one object in the API's shape.

        Args:
            wire: ``{"id": ..., "name": ..., "fields": [{"key": ..., "stringValue": ...}]}``.

        Returns:
            The object.

        Raises:
            ValueError: A field's key or value is not text.
        """
        fields: list[tuple[str, str, str]] = []
        for field in wire.get("fields") or []:
            kind = "refValue" if "refValue" in field else "stringValue"
            key, value = field["key"], field.get(kind, "")
            if not (isinstance(key, str) and isinstance(value, str)):
                raise ValueError(f"object {wire['id']!r} has a field that is not text: {field!r}")  # noqa: TRY004
            fields.append((key, kind, value))
        return cls(
            id=wire["id"],
            name=wire.get("name", wire["id"]),
            strings=MappingProxyType({k: v for k, kind, v in fields if kind == "stringValue"}),
            refs=MappingProxyType({k: v for k, kind, v in fields if kind == "refValue"}),
            fields=tuple(fields),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """The task PollForTask handed out: its ids and its pipeline objects by id.

    `TaskRunner` gives one to its handler; read your own poll's answer with `from_wire`:

    ```python
    answer = await client.poll_for_task(workerGroup="wg")
    if "taskObject" in answer:  # an empty poll has none
        task = Task.from_wire(answer["taskObject"])
    ```

    Attributes:
        task_id: The ``taskId`` to report progress and status with.
        pipeline_id: The pipeline it belongs to.
        attempt_id: The id of the attempt object this task runs.
        objects: The pipeline objects the service sent, by id (read-only).
    """

    task_id: str
    pipeline_id: str
    attempt_id: str
    objects: Mapping[str, PipelineObject]

    @property
    def attempt(self) -> PipelineObject | None:
        """The attempt object this task runs, if the service sent it."""
        return self.objects.get(self.attempt_id)

    @property
    def activity(self) -> PipelineObject | None:
        """The activity the attempt belongs to (its ``@componentParent``), if sent."""
        attempt = self.attempt
        parent = attempt.refs.get("@componentParent") if attempt else None
        return self.objects.get(parent) if parent else None

    @classmethod
    def from_wire(cls, task_object: Mapping[str, Any]) -> Task:
        """Read PollForTask's ``taskObject``.

        Args:
            task_object: ``poll_for_task(...)["taskObject"]``.

        Returns:
            The task.

        Raises:
            ValueError: The object is malformed (no ``taskId``, ``pipelineId`` or
                ``attemptId``, a ``taskId`` the service would not take, a field that is not
                text); the message names what is wrong.
        """
        # A malformed answer, not a caller passing the wrong type: hence ValueError throughout.
        if not isinstance(task_object, Mapping):
            raise ValueError(f"the task object is not a JSON object: {task_object!r}")  # noqa: TRY004
        for key in ("taskId", "pipelineId", "attemptId"):
            if not isinstance(task_object.get(key), str) or not task_object[key]:
                raise ValueError(f"the task object has no {key}: {_preview(task_object)}")
        if problem := member_shape("ReportTaskProgressInput", "taskId").problem(
            task_object["taskId"]
        ):
            raise ValueError(f"the task object's taskId {problem}: {_preview(task_object)}")
        try:
            objects = {
                object_id: PipelineObject.from_wire({"id": object_id, **wire})
                for object_id, wire in (task_object.get("objects") or {}).items()
            }
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise ValueError(
                f"the task object's pipeline objects are malformed ({type(error).__name__}: "
                f"{error}): {_preview(task_object)}"
            ) from error
        return cls(
            task_id=task_object["taskId"],
            pipeline_id=task_object["pipelineId"],
            attempt_id=task_object["attemptId"],
            objects=MappingProxyType(objects),
        )


def _preview(task_object: object) -> str:
    plain = dict(task_object) if isinstance(task_object, Mapping) else task_object
    return shorten(repr(plain), 300)
