"""The public names are exported, and the errors behave as ordinary exceptions."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import types

import asyncheartbeat
import asyncheartbeat.instrumentation
import asyncheartbeat.testing
from asyncheartbeat import CancelReason, HeartbeatError, TaskStopped


def public_names(module: types.ModuleType) -> set[str]:
    # dir(), not vars(): asyncheartbeat and asyncheartbeat.testing import names on first use.
    return {
        name
        for name in dir(module)
        if not name.startswith("_")
        and not isinstance(value := getattr(module, name), types.ModuleType)
        and getattr(value, "__module__", "").startswith(module.__name__)
    }


def test_all_lists_every_public_name() -> None:
    """__all__ misses no public name and names nothing that is not there."""
    for module in (asyncheartbeat, asyncheartbeat.instrumentation, asyncheartbeat.testing):
        assert set(module.__all__) == public_names(module), module.__name__


def test_every_name_imported_on_first_use_is_in_all() -> None:
    """The packages that import their names on first use know where each of __all__ is."""
    for module in (asyncheartbeat, asyncheartbeat.testing):
        assert set(module._MODULES) == set(module.__all__), module.__name__


def test_a_fresh_import_reaches_names_and_subpackages_on_first_use() -> None:
    """In a fresh process, `import asyncheartbeat` gives its names and its subpackages
    (`asyncheartbeat.instrumentation`) as when it imported everything at once."""
    code = (
        "import asyncheartbeat as a; "
        "print(a.Heartbeat.__name__, a.instrumentation.set_hooks.__name__, 'x' in dir(a))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["Heartbeat", "set_hooks", "False"]


def test_task_cancelled_is_an_ordinary_exception() -> None:
    """Worker loops catch TaskStopped with `except Exception`; it is no cancellation."""
    error = TaskStopped("task-1", CancelReason.LEASE_LOST, "no report for 300 s")
    assert isinstance(error, HeartbeatError)
    assert isinstance(error, Exception)
    assert str(error) == "task 'task-1' cancelled (lease-lost): no report for 300 s"


def test_task_cancelled_survives_pickling_and_copying() -> None:
    """The error crosses process boundaries intact (multiprocessing, logging queues)."""
    error = TaskStopped("task-1", CancelReason.REJECTED, "AccessDenied")
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert (clone.task_id, clone.reason, clone.detail) == ("task-1", error.reason, error.detail)
