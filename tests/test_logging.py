"""Log records: silent without a logging configuration, one line each, facts as attributes."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import anyio
import pytest

from asyncheartbeat import Heartbeat, TaskStopped
from asyncheartbeat.instrumentation import Event, EventKind, LoggingHook
from asyncheartbeat.testing import Fault, LocalDataPipeline

from .test_runner import WORKER_GROUP, do_nothing, make_runner, until

# A real warning of the library's: the logging hook told of an overload, outside any loop.
WARN = """
import logging, sys
from asyncheartbeat.instrumentation import Event, EventKind, LoggingHook
if sys.argv[1:] == ["configured"]:
    logging.basicConfig()
LoggingHook()(Event(EventKind.OVERLOADED, "ReportTaskProgress", description="too many"))
"""


def ours(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    """The library's records whose ``hb_event`` is ``event``."""
    return [
        r for r in caplog.records
        if r.name.startswith("asyncheartbeat") and getattr(r, "hb_event", None) == event
    ]  # fmt: skip


def facts(record: logging.LogRecord) -> dict[str, Any]:
    """The record's ``hb_*`` attributes, without the prefix."""
    return {k.removeprefix("hb_"): v for k, v in vars(record).items() if k.startswith("hb_")}


@pytest.mark.parametrize(("argv", "shown"), [([], False), (["configured"], True)])
def test_a_warning_reaches_stderr_only_through_a_logging_configuration(
    argv: list[str], shown: bool
) -> None:
    """Without logging configured, a library warning stays off stderr (no lastResort)."""
    result = subprocess.run(
        [sys.executable, "-c", WARN, *argv], capture_output=True, text=True, check=True
    )
    assert ("heartbeats overloaded: too many" in result.stderr) is shown
    if not shown:
        assert result.stderr == ""


def test_a_late_report_is_logged_with_its_delay_and_its_likely_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """LATE reads as a WARNING saying how late the report is and what blocks a loop."""
    late = Event(EventKind.LATE, "ReportTaskProgress", task_id="t-1", delay=30, description="x")
    LoggingHook()(late)
    [record] = ours(caplog, "late")
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        "report for task 't-1' is 30.00 s late: the event loop was blocked (blocking code"
    )
    assert facts(record)["delay"] == 30


@pytest.mark.asyncio
async def test_heartbeat_records_carry_task_operation_attempt_delay_and_reason(
    dp: LocalDataPipeline, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A retry and a verdict are logged with hb_* attributes, on one line each."""
    caplog.set_level(logging.DEBUG, logger="asyncheartbeat")
    task_id = dp.add_task()
    dp.inject(
        Fault.error("InternalServiceError", message="first line\nsecond line"), task_id=task_id
    )
    with anyio.fail_after(10), pytest.raises(TaskStopped):
        async with Heartbeat(client, task_id, interval=0.1, lease_timeout=1.0):
            await dp.wait_for_reports(task_id, 3)
            dp.cancel_task(task_id)
            await anyio.sleep_forever()

    [retried] = ours(caplog, "retried")
    got = facts(retried)
    assert retried.levelno == logging.WARNING
    assert (got["task_id"], got["operation"], got["attempt"]) == (task_id, "ReportTaskProgress", 1)
    assert got["delay"] > 0
    assert "InternalServiceError" in got["detail"]
    assert "\n" not in retried.getMessage()
    assert "first line second line" in retried.getMessage()
    answered = [facts(r) for r in ours(caplog, "answered")]
    assert answered
    assert all(a["latency"] > 0 and a["task_id"] == task_id for a in answered)
    [verdict] = [facts(r) for r in ours(caplog, "verdict")]
    assert (verdict["reason"], verdict["task_id"]) == ("requested", task_id)
    assert "delay" not in verdict


@pytest.mark.asyncio
async def test_task_runner_records_carry_the_runner_and_the_task(
    dp: LocalDataPipeline, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A task runner's records name the runner, its worker group, and each task's ids."""
    caplog.set_level(logging.INFO, logger="asyncheartbeat")
    pipeline_id = dp.add_pipeline(worker_group=WORKER_GROUP)
    runner, events = make_runner(client, do_nothing)
    await until(runner, lambda: events.wait_for("finished"))

    [started] = [facts(r) for r in ours(caplog, "runner_started")]
    assert (started["taskrunner_id"], started["worker_group"]) == (
        runner.taskrunner_id, WORKER_GROUP
    )  # fmt: skip
    [finished] = [facts(r) for r in ours(caplog, "task_finished")]
    [task] = [e.task for e in events.of("finished")]
    assert (finished["task_id"], finished["pipeline_id"], finished["attempt_id"]) == (
        task.task_id, pipeline_id, task.attempt_id
    )  # fmt: skip
    assert finished["duration"] >= 0
    assert finished["taskrunner_id"] == runner.taskrunner_id
    assert ours(caplog, "runner_stopped")
