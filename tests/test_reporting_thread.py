"""`ReportingThread`: heartbeats that outlive a blocked event loop, over real HTTP to the
local Data Pipeline in a process of its own (a server on the test's loop would block too)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import pytest_asyncio

from asyncheartbeat import (
    CancelReason,
    Heartbeat,
    HeartbeatError,
    ReportingThread,
    Task,
    TaskEvent,
    TaskRunner,
    TaskStopped,
)
from asyncheartbeat.instrumentation import Event, EventKind
from asyncheartbeat.testing import EmulatorProcess, Fault

from .conftest import LATE, make_client

# One emulator for the module: the tests share its loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")

INTERVAL, LEASE = 0.2, 1.0


class ThreadEvents(list[tuple[float, Event]]):
    """The events of a reporting thread's client, with the thread's clock time of each."""

    def __call__(self, event: Event) -> None:
        self.append((time.monotonic(), event))

    def of(self, kind: EventKind) -> list[tuple[float, Event]]:
        return [(at, e) for at, e in self if e.kind is kind]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def emulator() -> AsyncIterator[EmulatorProcess]:
    async with EmulatorProcess() as dp:
        yield dp


def block_the_loop(seconds: float) -> None:
    """Job code that blocks the event loop (a sync driver, a CPU-bound parse)."""
    time.sleep(seconds)


def maker(dp: EmulatorProcess) -> Callable[[], Any]:
    return lambda: make_client(dp)


async def test_a_body_blocking_the_loop_for_twice_the_lease_keeps_it(
    emulator: EmulatorProcess,
) -> None:
    """Reports go on from the thread while the body blocks the loop for 2x the lease."""
    task_id = await emulator.add_task()
    async with (
        ReportingThread(maker(emulator)) as reporting,
        Heartbeat(reporting, task_id, interval=INTERVAL, lease_timeout=LEASE) as hb,
    ):
        blocked_from = time.monotonic()
        block_the_loop(2 * LEASE)
        beats_during_block = hb.beats - 1
        await anyio.lowlevel.checkpoint()
    assert hb.cancel_reason is None
    sent = [call.received_at for call in await emulator.reports(task_id)]
    during = [at for at in sent if at >= blocked_from]
    assert beats_during_block >= 3
    # No gap between answered reports came near the lease.
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert max(gaps) < LEASE - LATE, gaps
    assert len(during) >= 3


@pytest.mark.slow
async def test_without_the_thread_the_same_block_loses_the_lease(
    emulator: EmulatorProcess,
) -> None:
    """The control: on the loop, the same block ends in LEASE_LOST."""
    task_id = await emulator.add_task()
    async with make_client(emulator) as client:
        with pytest.raises(TaskStopped) as caught:
            async with Heartbeat(client, task_id, interval=INTERVAL, lease_timeout=LEASE):
                block_the_loop(2 * LEASE)
    assert caught.value.reason is CancelReason.LEASE_LOST


async def test_a_cancel_answered_during_the_block_reaches_the_body_at_its_first_await(
    emulator: EmulatorProcess,
) -> None:
    """canceled: true is acted on in the thread: reporting stops, and the body is cancelled
    at the first await after the block."""
    task_id = await emulator.add_task()
    events = ThreadEvents()
    passed_first_await = False
    async with ReportingThread(maker(emulator), hooks=[events]) as reporting:
        with pytest.raises(TaskStopped) as caught:
            async with Heartbeat(reporting, task_id, interval=INTERVAL, lease_timeout=LEASE):
                await emulator.cancel_task(task_id)
                blocked_from = time.monotonic()
                block_the_loop(LEASE)
                block_ended = time.monotonic()
                await anyio.lowlevel.checkpoint()
                passed_first_await = True
    assert caught.value.reason is CancelReason.REQUESTED
    assert not passed_first_await
    [(verdict_at, _)] = events.of(EventKind.VERDICT)
    assert blocked_from < verdict_at < block_ended  # reached in the thread, during the block
    reports = await emulator.reports(task_id)
    assert [c.outcome for c in reports] == ["answered", "answered"]  # none after the cancel


async def test_a_lease_lost_during_the_block_is_declared_on_time_and_delivered_after_it(
    emulator: EmulatorProcess,
) -> None:
    """With the service gone, LEASE_LOST is declared in the thread when the lease ends, and
    the body learns of it at its first await after the block."""
    task_id = await emulator.add_task()
    events = ThreadEvents()
    async with ReportingThread(maker(emulator), hooks=[events]) as reporting:
        with pytest.raises(TaskStopped) as caught:
            async with Heartbeat(reporting, task_id, interval=INTERVAL, lease_timeout=LEASE) as hb:
                await emulator.inject(Fault.drop(), task_id=task_id, times=None)
                block_the_loop(2 * LEASE)
                block_ended = time.monotonic()
                last_success = hb.last_success
                await anyio.lowlevel.checkpoint()
    assert caught.value.reason is CancelReason.LEASE_LOST
    [(verdict_at, _)] = events.of(EventKind.VERDICT)
    assert last_success is not None
    lease_end = last_success + LEASE
    assert lease_end - LATE <= verdict_at <= lease_end + LATE
    assert verdict_at < block_ended


async def test_a_stall_inside_sync_code_is_caught_in_the_thread(
    emulator: EmulatorProcess,
) -> None:
    """A body that blocks without progress() for stall_timeout is STALLED, declared in the
    thread during the block; one that calls progress() from the same sync code is not."""
    stall = 0.4
    events = ThreadEvents()
    async with ReportingThread(maker(emulator), hooks=[events]) as reporting:
        progressing = await emulator.add_task()
        async with Heartbeat(
            reporting, progressing, interval=INTERVAL, lease_timeout=LEASE, stall_timeout=stall
        ) as hb:
            for _ in range(10):
                block_the_loop(stall / 3)
                hb.progress()
            await anyio.lowlevel.checkpoint()
        assert hb.cancel_reason is None

        hung = await emulator.add_task()
        with pytest.raises(TaskStopped) as caught:
            async with Heartbeat(
                reporting, hung, interval=INTERVAL, lease_timeout=LEASE, stall_timeout=stall
            ):
                blocked_from = time.monotonic()
                block_the_loop(3 * stall)
                block_ended = time.monotonic()
                await anyio.lowlevel.checkpoint()
    assert caught.value.reason is CancelReason.STALLED
    [(verdict_at, _)] = events.of(EventKind.VERDICT)
    assert blocked_from + stall - LATE <= verdict_at < block_ended


async def test_fields_set_from_another_thread_are_reported_whole(
    emulator: EmulatorProcess,
) -> None:
    """set_field() works from any thread; the next report carries a consistent snapshot."""
    task_id = await emulator.add_task()
    async with (
        ReportingThread(maker(emulator)) as reporting,
        Heartbeat(reporting, task_id, interval=INTERVAL, lease_timeout=LEASE) as hb,
    ):

        def write() -> None:
            for n in range(200):
                hb.set_field("a", str(n))
                hb.set_field("b", str(n))

        writers = [threading.Thread(target=write) for _ in range(2)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        await hb.beat()
    reports = await emulator.reports(task_id)
    for call in reports:
        fields = call.fields
        if "a" in fields:  # each report saw a, then b, set in that order, one at a time
            assert 0 <= int(fields["a"]) - int(fields["b"]) <= 1, fields
    assert reports[-1].fields == {"a": "199", "b": "199"}


async def test_the_blocked_loop_is_named_once_per_block(emulator: EmulatorProcess) -> None:
    """LOOP_BLOCKED says how long the job's loop has not run, once per block."""
    task_id = await emulator.add_task()
    events = ThreadEvents()
    async with (
        ReportingThread(maker(emulator), hooks=[events]) as reporting,
        Heartbeat(reporting, task_id, interval=INTERVAL, lease_timeout=LEASE),
    ):
        for _ in range(2):
            block_the_loop(1.6)  # many reports, one block
            await anyio.sleep(0.3)
    blocked = [e for _, e in events.of(EventKind.LOOP_BLOCKED)]
    assert len(blocked) == 2
    assert all(e.delay is not None and 1.0 <= e.delay < 1.6 for e in blocked)


async def test_leaving_the_thread_leaves_no_thread_behind(emulator: EmulatorProcess) -> None:
    """threading.enumerate() is back to what it was once the ReportingThread is left."""
    before = set(threading.enumerate())
    task_id = await emulator.add_task()
    async with ReportingThread(maker(emulator)) as reporting:
        assert len(set(threading.enumerate()) - before) >= 1
        async with Heartbeat(reporting, task_id, interval=INTERVAL, lease_timeout=LEASE):
            block_the_loop(INTERVAL * 3)
            await anyio.lowlevel.checkpoint()
    assert set(threading.enumerate()) == before


async def test_leaving_with_heartbeats_inside_their_blocks_is_an_error_that_says_so(
    emulator: EmulatorProcess,
) -> None:
    """The ReportingThread left under a running heartbeat stops it and says so."""
    task_id = await emulator.add_task()
    entered = anyio.Event()
    body_error: list[BaseException] = []

    async def body(reporting: ReportingThread) -> None:
        try:
            async with Heartbeat(reporting, task_id, interval=INTERVAL, lease_timeout=LEASE):
                entered.set()
                await anyio.sleep_forever()
        except HeartbeatError as exc:
            body_error.append(exc)

    left = pytest.RaisesExc(HeartbeatError, match=r"still inside their blocks.*" + task_id)
    with pytest.RaisesGroup(left):
        async with anyio.create_task_group() as group, ReportingThread(maker(emulator)) as rt:
            group.start_soon(body, rt)
            await entered.wait()
    [error] = body_error
    assert "ReportingThread was left" in str(error)


async def test_a_client_that_cannot_be_made_fails_the_entry_and_ends_the_thread() -> None:
    """An exception from make_client is raised on entry, as HeartbeatError, and the thread
    is gone."""
    before = set(threading.enumerate())

    def broken() -> Any:
        raise OSError("no credentials here")

    with pytest.raises(HeartbeatError, match="could not make its client") as caught:
        async with ReportingThread(broken):
            pass
    assert isinstance(caught.value.__cause__, OSError)
    assert set(threading.enumerate()) == before


async def test_make_client_must_be_callable() -> None:
    """A client given where a maker is wanted is refused, naming what was given."""
    with pytest.raises(TypeError, match="make_client must be callable"):
        ReportingThread(object())  # type: ignore[arg-type]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_body_on_trio_keeps_its_lease_through_a_block(anyio_backend: str) -> None:
    """The body on trio, the thread's loop on asyncio for aiobotocore: the block is outlived."""
    async with EmulatorProcess() as dp:
        task_id = await dp.add_task()
        async with ReportingThread(maker(dp)) as reporting:
            with anyio.fail_after(10):
                async with Heartbeat(
                    reporting, task_id, interval=INTERVAL, lease_timeout=LEASE
                ) as hb:
                    block_the_loop(2 * LEASE)
                    await anyio.lowlevel.checkpoint()
        assert hb.cancel_reason is None
        assert hb.beats >= 5


async def test_a_task_runner_keeps_a_blocking_handlers_lease_and_reports_it_finished(
    emulator: EmulatorProcess,
) -> None:
    """TaskRunner given a ReportingThread: polls, reports and the status all go from the
    thread, and a handler blocking the loop for 2x the lease ends FINISHED."""
    await emulator.add_pipeline(worker_group="blocking")
    seen: list[TaskEvent] = []

    async def handle(task: Task, hb: Heartbeat) -> None:
        block_the_loop(2 * LEASE)
        runner.stop()

    async with ReportingThread(maker(emulator)) as reporting:
        runner = TaskRunner(
            reporting, worker_group="blocking", handler=handle, interval=INTERVAL,
            lease_timeout=LEASE, on_event=seen.append,
        )  # fmt: skip
        with anyio.fail_after(20):
            await runner.run()
    assert [e.kind for e in seen] == ["started", "finished"]
    task_id = seen[0].task.task_id
    reports = await emulator.reports(task_id)
    assert len(reports) >= 2 * LEASE / INTERVAL - 2  # they went on through the block
    calls = await emulator.calls()
    [status] = [c for c in calls if c.operation == "SetTaskStatus" and c.task_id == task_id]
    assert status.params["taskStatus"] == "FINISHED"


async def test_a_task_runner_reports_a_handler_stuck_in_sync_code_failed_from_the_thread(
    emulator: EmulatorProcess,
) -> None:
    """A handler that never yields before its lease ends is STALLED, and the thread reports
    the task FAILED at once, naming where the handler is stuck; nothing is sent twice."""
    stall = 0.4
    await emulator.add_pipeline(worker_group="stuck")
    seen: list[TaskEvent] = []
    block_ended: list[float] = []

    async def handle(task: Task, hb: Heartbeat) -> None:
        runner.stop()
        block_the_loop(2 * LEASE)
        block_ended.append(time.monotonic())
        await anyio.lowlevel.checkpoint()

    async with ReportingThread(maker(emulator)) as reporting:
        runner = TaskRunner(
            reporting, worker_group="stuck", handler=handle, interval=INTERVAL,
            lease_timeout=LEASE, stall_timeout=stall, on_event=seen.append,
        )  # fmt: skip
        with anyio.fail_after(20):
            await runner.run()
    assert [(e.kind, e.reason) for e in seen] == [
        ("started", None),
        ("failed", CancelReason.STALLED),
    ]
    task_id = seen[0].task.task_id
    calls = await emulator.calls()
    [status] = [c for c in calls if c.operation == "SetTaskStatus" and c.task_id == task_id]
    assert status.params["taskStatus"] == "FAILED"
    assert status.params["errorId"] == "TaskStalled"
    assert "block_the_loop" in status.params["errorStackTrace"]
    answered = [c.received_at for c in await emulator.reports(task_id)]
    assert status.received_at < block_ended[0]  # sent during the block, from the thread
    assert status.received_at < answered[-1] + LEASE  # while the task was still ours
    assert all(at < status.received_at for at in answered)  # no report after it
