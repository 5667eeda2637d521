"""The typed view of PollForTask's task object."""

from __future__ import annotations

import pytest

from asyncheartbeat import Task


def test_the_task_view_keeps_strings_and_refs_apart() -> None:
    """Task.from_wire reads ids and objects; repeated keys keep every value in order."""
    task = Task.from_wire(
        {
            "taskId": "t",
            "pipelineId": "df-1",
            "attemptId": "@Copy_1",
            "objects": {
                "@Copy_1": {"name": "@Copy_1", "fields": [
                    {"key": "@componentParent", "refValue": "Copy"}]},
                "Copy": {"name": "Copy", "fields": [
                    {"key": "command", "stringValue": "cp"},
                    {"key": "input", "refValue": "A"},
                    {"key": "input", "refValue": "B"},
                ]},
            },
        }
    )  # fmt: skip
    assert task.activity is not None
    assert task.activity.strings == {"command": "cp"}
    assert task.activity.refs == {"input": "B"}
    assert task.activity.values("input") == ["A", "B"]
    with pytest.raises(ValueError, match="no attemptId"):
        Task.from_wire({"taskId": "t", "pipelineId": "df-1"})


GOOD = {"taskId": "t", "pipelineId": "df-1", "attemptId": "@a"}


@pytest.mark.parametrize(
    ("task_object", "problem"),
    [
        ({**GOOD, "taskId": 123}, "no taskId"),
        ({**GOOD, "pipelineId": ""}, "no pipelineId"),
        ({**GOOD, "taskId": "t" * 3000}, "taskId has 3000 characters"),
        ({**GOOD, "taskId": "t-\x00"}, "taskId"),
        ({**GOOD, "objects": {"@a": {"fields": [{"stringValue": "x"}]}}}, "KeyError"),
        ({**GOOD, "objects": {"@a": {"fields": [{"key": 5, "stringValue": "x"}]}}}, "not text"),
        ({**GOOD, "objects": {"@a": "not an object"}}, "malformed"),
        ({**GOOD, "objects": ["@a"]}, "malformed"),
        (["not", "a", "mapping"], "not a JSON object"),
    ],
)
def test_a_malformed_task_object_raises_value_error_naming_the_problem(
    task_object: object, problem: str
) -> None:
    """Whatever is wrong with a task object, reading it raises ValueError saying what."""
    with pytest.raises(ValueError, match=problem):
        Task.from_wire(task_object)  # type: ignore[arg-type]
