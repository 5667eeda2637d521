"""The reporter's own rules: one timer and one task for all of a client's heartbeats, one
verdict function, one heartbeat per task, over real HTTP against the local Data Pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from asyncheartbeat import CancelReason, Heartbeat, HeartbeatError, Reporter
from asyncheartbeat._reporter import Lease
from asyncheartbeat._reporter._lease import Stage
from asyncheartbeat._reporter._verdict import verdict
from asyncheartbeat._service import Answered, Final, Transient
from asyncheartbeat._timing import Timing
from asyncheartbeat.testing import LocalDataPipeline

pytestmark = pytest.mark.asyncio


@contextlib.asynccontextmanager
async def sleeping_heartbeats(client: Any, task_ids: list[str]) -> AsyncIterator[None]:
    """Heartbeats for ``task_ids`` on ``client``, every one acknowledged and its body asleep
    (the next report 30 s away) while the block runs; they leave as it ends."""
    entered = anyio.Event()
    leave = anyio.Event()
    running = 0

    async def job(task_id: str) -> None:
        nonlocal running
        async with Heartbeat(client, task_id, interval=30, lease_timeout=120):
            running += 1
            if running == len(task_ids):
                entered.set()
            await leave.wait()

    async with anyio.create_task_group() as tg:
        for task_id in task_ids:
            tg.start_soon(job, task_id)
        with anyio.fail_after(30):
            await entered.wait()
        try:
            yield
        finally:
            leave.set()


async def test_heartbeats_sleeping_between_reports_leave_one_task_for_the_whole_client(
    dp: LocalDataPipeline, client: Any
) -> None:
    """Between reports, 50 heartbeats on one client add one task (the reporter's), not one
    or more per heartbeat, and none once they have ended."""

    def ours() -> list[str]:
        return [
            t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("asyncheartbeat:")
        ]

    async with sleeping_heartbeats(client, [dp.add_task() for _ in range(50)]):
        sleeping = ours()
    assert sleeping == ["asyncheartbeat:reporter"]
    assert not ours()


async def test_every_report_of_a_client_is_timed_by_its_one_schedule(
    dp: LocalDataPipeline, client: Any
) -> None:
    """Heartbeats on one client keep their next reports as entries of one schedule, and
    are let go as they end."""
    reporter = Reporter.of(client)
    task_ids = [dp.add_task() for _ in range(5)]
    async with sleeping_heartbeats(reporter, task_ids):
        timers = reporter._schedule.due(math.inf)  # every timer, due or not
    assert sorted(timer.value for _, _, timer in timers) == ["report"] * 5
    assert {lease.task_id for _, lease, _ in timers} == set(task_ids)
    assert not reporter._leases


def lease(stage: Stage) -> Lease:
    made = Lease("task-1", Timing.check(10, 60, None), (0, []))
    made.stage = stage
    return made


@pytest.mark.parametrize(
    ("outcome", "stage", "reason", "says"),
    [
        (Answered({"canceled": False}, 0, 1), Stage.RUNNING, None, ""),
        (
            Answered({"canceled": True}, 0, 1, Final(CancelReason.REQUESTED, "canceled")),
            Stage.RUNNING, CancelReason.REQUESTED, "canceled",
        ),
        (Final(CancelReason.TASK_NOT_FOUND, "gone"), Stage.RUNNING, CancelReason.TASK_NOT_FOUND,
         "gone"),
        (Transient("HTTP 500"), Stage.RUNNING, CancelReason.LEASE_LOST,
         "no report succeeded for 60 s; last failure: HTTP 500"),
        (Transient("HTTP 500"), Stage.ACKNOWLEDGING, CancelReason.LEASE_LOST,
         "the task was not acknowledged within 60 s; last failure: HTTP 500"),
    ],
)  # fmt: skip
async def test_one_function_says_what_each_outcome_means_for_the_work(
    outcome: Answered | Transient | Final, stage: Stage, reason: CancelReason | None, says: str
) -> None:
    """An answer goes on unless it says stop; a final failure stops for its reason; a
    failure left when the deadline passed loses the lease, told by what was being sent."""
    decided = verdict(outcome, lease(stage), acknowledge_within=120)
    assert (decided and decided.reason) == reason
    assert (decided.description if decided else "") == says


async def test_a_second_heartbeat_for_a_running_task_is_refused_naming_it(
    dp: LocalDataPipeline, client: Any
) -> None:
    """Two heartbeats for one task on one client would send twice the reports: the second
    is refused, and the first keeps its lease."""
    task_id = dp.add_task()
    async with Heartbeat(client, task_id, interval=0.1, lease_timeout=1) as first:
        with pytest.raises(HeartbeatError, match=f"task {task_id!r} has a heartbeat running"):
            async with Heartbeat(client, task_id, interval=0.1, lease_timeout=1):
                pytest.fail("the second body ran")
        await first.beat()
    assert first.cancel_reason is None
    # Once the first has ended, the task may be taken up again.
    async with Heartbeat(client, task_id, interval=0.1, lease_timeout=1) as again:
        await again.beat()
