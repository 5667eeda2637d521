"""Limits and patterns are botocore's own; a wrong client is refused at once."""

from __future__ import annotations

import pytest
from botocore.loaders import create_loader

from asyncheartbeat import Heartbeat
from asyncheartbeat._model import member_shape, python_pattern


def test_a_client_without_report_task_progress_is_refused() -> None:
    """Passing the wrong object fails at once, saying what a client must have."""
    with pytest.raises(TypeError, match="report_task_progress"):
        Heartbeat(object(), "task-1")  # type: ignore[arg-type]


def test_limits_come_from_botocores_model() -> None:
    """The limits are botocore's, read at run time, not copied by hand."""
    shapes = create_loader().load_service_model("datapipeline", "service-2")["shapes"]
    assert member_shape("ReportTaskProgressInput", "taskId").max_length == shapes["taskId"]["max"]
    assert member_shape("Field", "stringValue").max_length == shapes["fieldStringValue"]["max"]


def test_model_patterns_are_translated_from_utf16_to_code_points() -> None:
    """The model's surrogate-pair range becomes the astral plane in Python's terms."""
    pattern = python_pattern(r"[\u0020-\uD7FF\uD800\uDC00-\uDBFF\uDFFF]*")
    assert pattern == "[\\ -\ud7ff\U00010000-\U0010ffff]*"
