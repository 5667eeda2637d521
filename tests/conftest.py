from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import anyio
import pytest
import pytest_asyncio
import trio.testing
from aiobotocore.config import AioConfig

from asyncheartbeat import TaskEvent, instrumentation
from asyncheartbeat.instrumentation import Event, EventKind, LoggingHook
from asyncheartbeat.testing import (
    EmulatorProcess,
    LocalDataPipeline,
    MockServiceError,
    RateLimit,
    pytest_plugin,
)
from asyncheartbeat.testing._limits import RateLimiter

# Distinctive so that a test can prove they never reach a log line.
ACCESS_KEY = "AKIATESTACCESSKEY42"
SECRET_KEY = "test-secret-key-must-never-be-logged"

#: How late a timer, a verdict or a local answer may come over real HTTP on a busy 2-core
#: machine with two other processes using the CPU (CI is one: 0.1 s failed there). Tests
#: over HTTP assert "never early, and late by less than this"; the exact timing rules are
#: proven under virtual time (test_timing.py, test_calls.py).
LATE = 0.4


def client_config(**overrides: Any) -> AioConfig:
    """The plugin's test config (one HTTP call per attempt), with ``overrides``."""
    config: AioConfig = pytest_plugin.client_config(poll_timeout=90).merge(AioConfig(**overrides))
    return config


class RecordingClient:
    """A real client, with a note of when each report was sent and whether it was answered.

    The heartbeat's schedule is about when it sends; the server only sees arrivals, which
    transit and a busy event loop delay, and answers the client may have given up on.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self.meta = client.meta  # where the heartbeat finds the size of the connection pool
        self.sent: dict[str, list[tuple[float, bool]]] = {}
        #: When each answer came back, per task.
        self.answers_at: dict[str, list[float]] = {}
        #: When each call ended, answered or not, per task.
        self.returns_at: dict[str, list[float]] = {}

    async def report_task_progress(
        self, *, taskId: str, fields: list[dict[str, str]]
    ) -> Mapping[str, Any]:
        record = self.sent.setdefault(taskId, [])
        sent_at = anyio.current_time()
        try:
            response: Mapping[str, Any] = await self._client.report_task_progress(
                taskId=taskId, fields=fields
            )
        except BaseException:
            record.append((sent_at, False))
            raise
        finally:
            self.returns_at.setdefault(taskId, []).append(anyio.current_time())
        record.append((sent_at, isinstance(response.get("canceled"), bool)))
        self.answers_at.setdefault(taskId, []).append(anyio.current_time())
        return response

    def answered(self, task_id: str) -> list[float]:
        """When the reports for ``task_id`` that got an answer were sent."""
        return [sent_at for sent_at, answered in self.sent.get(task_id, []) if answered]


@pytest.fixture
def dp(local_datapipeline: LocalDataPipeline) -> LocalDataPipeline:
    """The plugin's local Data Pipeline, under a short name (its options from the module's
    or the test's ``local_datapipeline`` marker)."""
    return local_datapipeline


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """Virtual time: trio's clock, jumping to the next timer whenever every task waits."""
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
def anyio_backend(clock: trio.testing.MockClock) -> tuple[str, dict[str, Any]]:
    """``pytest.mark.anyio`` tests run on trio under `clock`, unless they ask for a backend."""
    return "trio", {"clock": clock}


class Waiter:
    """A test's way to wait until something that changes holds: whoever changes it calls
    `changed`; `until` waits, re-checking after each change."""

    def __init__(self) -> None:
        self._changed: anyio.Event | None = None

    def changed(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def until(self, holds: Callable[[], object]) -> None:
        """Wait until ``holds()`` is truthy; guard it with a timeout."""
        while not holds():
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()


def make_client(dp: LocalDataPipeline | EmulatorProcess, config: AioConfig | None = None) -> Any:
    """An aiobotocore client for ``dp`` (an async context manager)."""
    return pytest_plugin.botocore_session().create_client(
        "datapipeline",
        region_name="us-east-1",
        endpoint_url=dp.url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=config or client_config(),
    )


@pytest_asyncio.fixture
async def client(dp: LocalDataPipeline) -> AsyncIterator[Any]:
    """An aiobotocore client for ``dp``, warmed up as a worker's is: a new client's first
    call pays for endpoint resolution and connecting, longer than the tests' intervals."""
    async with make_client(dp) as datapipeline:
        await datapipeline.list_pipelines()
        dp.calls.clear()  # the warm-up is not the test's
        yield datapipeline


class TaskEvents:
    """A runner's ``on_event``: its task events in order, and waits for them."""

    def __init__(self) -> None:
        self.seen: list[TaskEvent] = []
        self._waiter = Waiter()

    def __call__(self, event: TaskEvent) -> None:
        self.seen.append(event)
        self._waiter.changed()

    def of(self, kind: str) -> list[TaskEvent]:
        return [event for event in self.seen if event.kind == kind]

    def ended(self) -> list[TaskEvent]:
        """The events of tasks that ended, however they ended."""
        return [event for event in self.seen if event.kind != "started"]

    async def wait_for(self, kind: str, count: int = 1) -> list[TaskEvent]:
        """Wait (up to 5 s) for ``count`` events of ``kind``; return them all."""
        with anyio.fail_after(5):
            await self._waiter.until(lambda: len(self.of(kind)) >= count)
        return self.of(kind)

    async def wait_for_ends(self, count: int) -> list[TaskEvent]:
        """Wait (up to 20 s) for ``count`` tasks to end; return their events."""
        with anyio.fail_after(20):
            await self._waiter.until(lambda: len(self.ended()) >= count)
        return self.ended()


class Account:
    """A MockClient handler answering ReportTaskProgress like one account of the service:
    its documented token bucket (10/s, burst 100, shared by every client given it), and
    ThrottlingException beyond it, with a note of each answer's fate."""

    def __init__(self, rate: float = 10, burst: int = 100) -> None:
        self.limiter = RateLimiter({"ReportTaskProgress": RateLimit(rate, burst=burst)})
        self.answered = self.throttled = 0

    def __call__(self, task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        if not self.limiter.allows("ReportTaskProgress", anyio.current_time()):
            self.throttled += 1
            raise MockServiceError("ThrottlingException", "Rate exceeded")
        self.answered += 1
        return {"canceled": False}


class EventLog(list[Event]):
    """Every instrumentation event of one test."""

    def of(self, kind: EventKind, task_id: str | None = None) -> list[Event]:
        return [e for e in self if e.kind is kind and task_id in (None, e.task_id)]


@pytest.fixture(autouse=True)
def events() -> Iterator[EventLog]:
    """The test's events, beside a logging hook of its own (its warning caps start afresh)."""
    log = EventLog()
    saved = instrumentation.get_hooks()
    instrumentation.set_hooks([LoggingHook(), log.append])
    yield log
    instrumentation.set_hooks(saved)


@pytest.fixture(autouse=True)
def no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test after which asyncio logged an error: an unretrieved task exception, an
    unclosed session or transport."""
    caplog.set_level(logging.WARNING, logger="asyncio")
    yield
    errors = [
        r for r in caplog.get_records("call") if r.name == "asyncio" and r.levelno >= logging.ERROR
    ]
    assert not errors, [r.getMessage() for r in errors]


async def run_one_task(client: Any, worker_group: str = "wg") -> str:
    """Run a `TaskRunner` on ``client`` until it has run one task of ``worker_group``, and
    return that task's id once ``run()`` has returned (its status sent, or given up)."""
    from asyncheartbeat import Heartbeat, Task, TaskRunner  # noqa: PLC0415 - on first use

    ran: list[str] = []

    async def handle(task: Task, hb: Heartbeat) -> None:
        ran.append(task.task_id)
        runner.stop()

    runner = TaskRunner(
        client, worker_group=worker_group, handler=handle, interval=0.1, lease_timeout=1
    )
    with anyio.fail_after(10):
        await runner.run()
    [task_id] = ran
    return task_id
