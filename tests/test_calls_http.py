"""The reporter over real HTTP: a slow, a throttling and a busy service; mistakes; the runner."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import boto3
import pytest

from asyncheartbeat import (
    CancelReason,
    Heartbeat,
    HeartbeatError,
    Reporter,
    Task,
    TaskRunner,
    TaskStopped,
)
from asyncheartbeat.instrumentation import EventKind
from asyncheartbeat.testing import Fault, LocalDataPipeline, RateLimit

from .conftest import LATE, EventLog, client_config, make_client

pytestmark = pytest.mark.asyncio


async def run_fleet(client: Any, task_ids: list[str], seconds: float, **timing: Any) -> list[str]:
    """Run a heartbeat per task for ``seconds``; return the tasks whose heartbeat stopped."""
    stopped: list[str] = []

    async def job(task_id: str) -> None:
        try:
            async with Heartbeat(client, task_id, **timing):
                await anyio.sleep(seconds)
        except TaskStopped as cancelled:
            stopped.append(f"{task_id}: {cancelled}")

    async with anyio.create_task_group() as tg:
        for task_id in task_ids:
            tg.start_soon(job, task_id)
    return stopped


async def test_a_service_slower_than_the_interval_keeps_every_lease(
    dp: LocalDataPipeline, client: Any
) -> None:
    """Every answer takes 1.5 intervals: every lease is kept, and the service sees each
    task's reports come on without gaps as long as the lease."""
    task_ids = [dp.add_task() for _ in range(5)]
    dp.inject(Fault.delay(0.3), task_id=None, times=None)
    with anyio.fail_after(10):
        stopped = await run_fleet(client, task_ids, 2.5, interval=0.2, lease_timeout=1.5)
    assert stopped == []
    for task_id in task_ids:
        arrivals = [call.received_at for call in dp.reports(task_id)]
        assert len(arrivals) >= 5
        assert max(b - a for a, b in itertools.pairwise(arrivals)) < 1.5


async def test_a_throttling_service_slows_the_whole_client_and_every_lease_is_kept(
    events: EventLog,
) -> None:
    """30 heartbeats asking 150 reports/s of a service that allows 20/s: no lease is lost,
    and once the client has learned the rate (2 s), few answers are throttles."""
    limits = {"ReportTaskProgress": RateLimit(rate=20, burst=30)}
    async with LocalDataPipeline(rate_limits=limits) as dp, make_client(dp) as client:
        task_ids = [dp.add_task() for _ in range(30)]
        start = anyio.current_time()
        with anyio.fail_after(15):
            stopped = await run_fleet(client, task_ids, 4.5, interval=0.2, lease_timeout=3)
        outcomes = [
            call.outcome
            for call in dp.calls
            if call.operation == "ReportTaskProgress" and call.received_at > start + 2
        ]
    assert stopped == []
    throttled, answered = outcomes.count("error:ThrottlingException"), outcomes.count("answered")
    assert throttled <= 0.25 * answered, (throttled, answered)
    assert Reporter.of(client).rate("ReportTaskProgress") is not None
    assert events.of(EventKind.THROTTLED)
    assert not events.of(EventKind.RETRIED), "a throttle is not a failure to retry"


@pytest.mark.slow
async def test_three_clients_sharing_one_accounts_limit_keep_every_lease() -> None:
    """Three clients, 48 heartbeats each, that ask 10 times what the local Data Pipeline's
    ReportTaskProgress limit answers (capacity ÷ need 1.25): every lease is held to the end,
    the join costs less than one throttle per heartbeat, and once every task has been
    acknowledged, almost no answer is a throttle."""
    lease = 6.0
    limits = {"ReportTaskProgress": RateLimit(30, burst=30)}  # 144 tasks need 24/s
    async with LocalDataPipeline(rate_limits=limits, ack_timeout=lease, report_timeout=lease) as dp:
        task_ids = [dp.add_task() for _ in range(144)]
        stopped: list[str] = []
        held: list[str] = []

        async def job(client: Any, task_id: str) -> None:
            try:
                async with Heartbeat(client, task_id, interval=0.5, lease_timeout=lease):
                    await anyio.sleep(2 * lease)
            except TaskStopped as cancelled:
                stopped.append(f"{task_id}: {cancelled}")
            # As its heartbeat ends: does the service still hold the attempt?
            if dp.attempt(task_id).status.value == "RUNNING":
                held.append(task_id)

        async def worker(ids: list[str]) -> None:
            async with make_client(dp) as client, anyio.create_task_group() as tg:
                for task_id in ids:
                    tg.start_soon(job, client, task_id)

        with anyio.fail_after(5 * lease):
            async with anyio.create_task_group() as tg:
                for k in range(3):
                    tg.start_soon(worker, task_ids[k::3])
        reports = [c for c in dp.calls if c.operation == "ReportTaskProgress"]
    assert stopped == []
    assert sorted(held) == sorted(task_ids)
    # 144 fresh heartbeats acknowledging at once meet a burst of 30 whatever the client
    # does; what pacing promises is that the clients then stop asking for more than the
    # account answers.
    first_answered: dict[str, float] = {}
    for call in reports:
        if call.outcome == "answered":
            first_answered.setdefault(call.params["taskId"], call.received_at)
    all_acknowledged = max(first_answered.values())
    throttles = [c for c in reports if c.outcome == "error:ThrottlingException"]
    assert len(throttles) < len(task_ids), len(throttles)
    after = [c.outcome for c in reports if c.received_at > all_acknowledged]
    throttled_after = after.count("error:ThrottlingException")
    assert throttled_after <= 0.05 * after.count("answered"), (throttled_after, len(after))


async def test_a_big_pool_on_a_busy_loop_keeps_every_lease(dp: LocalDataPipeline) -> None:
    """150 heartbeats asking 3,000 reports/s of one client with a pool of 150, on a loop
    that cannot serve them: calls wait their turn instead of timing out, no lease is lost."""
    task_ids = [dp.add_task() for _ in range(150)]
    async with make_client(dp, client_config(max_pool_connections=150)) as client:
        with anyio.fail_after(20):
            stopped = await run_fleet(
                client, task_ids, 3, interval=0.05, lease_timeout=4, call_timeout=0.02
            )
    assert stopped == []
    assert all(len(dp.reports(task_id)) >= 2 for task_id in task_ids)


@pytest.mark.parametrize("body", [[], "x"], ids=["list", "string"])
async def test_an_answer_that_is_not_a_json_object_is_retried_not_called_a_mistake(
    dp: LocalDataPipeline, client: Any, body: object
) -> None:
    """botocore's parser raises AttributeError on a 200 whose body is not an object: that
    is the service's malformed answer, retried like any other, not the program's mistake."""
    task_id = dp.add_task()
    async with Heartbeat(client, task_id, interval=0.1, lease_timeout=2) as hb:
        dp.inject(Fault.answer(body), task_id=task_id, times=2)
        with anyio.fail_after(5):
            await dp.wait_for_reports(task_id, 5)
    assert hb.cancel_reason is None
    assert [c.outcome for c in dp.reports(task_id)].count("answer") == 2


async def test_a_closed_client_fails_at_once(dp: LocalDataPipeline) -> None:
    """A client used after it was closed raises HeartbeatError at once, not after the lease."""
    async with make_client(dp) as client:
        pass
    with anyio.fail_after(5), pytest.raises(HeartbeatError, match="closed client"):
        async with Heartbeat(client, dp.add_task(), interval=60, lease_timeout=300):
            pytest.fail("the body ran")


async def test_a_sync_boto3_client_is_refused_when_the_heartbeat_is_made(
    dp: LocalDataPipeline,
) -> None:
    """boto3's calls would block the event loop: refused with TypeError, naming the fix."""
    sync_client = boto3.client(
        "datapipeline",
        region_name="us-east-1",
        endpoint_url=dp.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with pytest.raises(TypeError, match=r"sync botocore/boto3 client.*aiobotocore"):
        Heartbeat(sync_client, "task-1")


async def test_set_task_status_slower_than_call_timeout_lands() -> None:
    """A SetTaskStatus answered after 0.3 s with call_timeout 0.2 s is waited for, once."""
    async with (
        LocalDataPipeline(poll_timeout=0.2) as dp,
        make_client(dp, TaskRunner.client_config()) as client,
    ):
        dp.add_pipeline(worker_group="slow-status")
        dp.inject(Fault.delay(0.3), operation="SetTaskStatus", times=None)
        done: list[Task] = []

        async def handle(task: Task, hb: Heartbeat) -> None:
            done.append(task)

        runner = TaskRunner(
            client, worker_group="slow-status", handler=handle, interval=0.1,
            lease_timeout=2, call_timeout=0.2,
            on_event=lambda event: runner.stop() if event.kind == "finished" else None,
        )  # fmt: skip
        with anyio.fail_after(10):
            await runner.run()
        [task] = done
        assert dp.attempt(task.task_id).status.value == "FINISHED"
        assert [c.operation for c in dp.calls].count("SetTaskStatus") == 1


async def test_the_runners_calls_go_through_its_clients_reporter(
    events: EventLog,
) -> None:
    """Polls, statuses, reports and the runner's heartbeat share the client's reporter."""
    async with (
        LocalDataPipeline(poll_timeout=0.2) as dp,
        make_client(dp, TaskRunner.client_config()) as client,
    ):
        dp.add_pipeline(worker_group="shared")

        async def handle(task: Task, hb: Heartbeat) -> None:
            await hb.beat()

        runner = TaskRunner(
            client, worker_group="shared", handler=handle, interval=0.1, lease_timeout=2,
            on_event=lambda event: runner.stop() if event.kind == "finished" else None,
        )  # fmt: skip
        with anyio.fail_after(10):
            await runner.run()
    assert runner.reporter is Reporter.of(client)
    answered = {e.operation for e in events.of(EventKind.ANSWERED)}
    assert {"ReportTaskProgress", "SetTaskStatus", "ReportTaskRunnerHeartbeat"} <= answered


async def test_fields_the_service_would_not_keep_are_refused_at_set_field(
    dp: LocalDataPipeline, client: Any
) -> None:
    """More than 50 fields, or more than 15,360 UTF-8 bytes of them, is refused by name,
    and the heartbeat goes on reporting what it had."""
    task_id = dp.add_task()
    async with Heartbeat(client, task_id, interval=0.1, lease_timeout=1) as hb:
        hb.set_field("log", "x" * 10_000)
        with pytest.raises(ValueError, match=r"\d+ UTF-8 bytes, more than the 15360"):
            hb.set_field("more", "é" * 3_000)
        hb.remove_field("log")
        for n in range(50):
            hb.set_field(f"k{n}", "v")
        with pytest.raises(ValueError, match="field 51 of the report, more than the 50"):
            hb.set_field("one-more", "v")
        await hb.beat()
    assert hb.cancel_reason is None
    assert len(dp.attempt(task_id).fields) == 50


async def test_aiobotocore_on_trio_fails_at_once() -> None:
    """aiobotocore runs on asyncio only: on trio a heartbeat says so at once."""

    class Nowhere:
        url = "http://127.0.0.1:9"  # never called: the heartbeat refuses first

    async def on_trio() -> str:
        async with make_client(Nowhere()) as client:  # type: ignore[arg-type]
            try:
                async with Heartbeat(client, "task-1", interval=60, lease_timeout=300):
                    return "the body ran"
            except HeartbeatError as error:
                return str(error)
        raise AssertionError("unreachable")

    with anyio.fail_after(10):
        message = await anyio.to_thread.run_sync(lambda: anyio.run(on_trio, backend="trio"))
    assert "aiobotocore clients run on asyncio only" in message


async def test_the_verdict_names_the_lost_lease_not_a_cut_call(
    dp: LocalDataPipeline, client: Any
) -> None:
    """A service that never answers loses the lease at its end, with all attempts named."""
    task_id = dp.add_task()
    with anyio.fail_after(3), pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, task_id, interval=0.1, lease_timeout=0.6) as hb:
            dp.inject(Fault.hang(), task_id=task_id, times=None)
            await anyio.sleep_forever()
    assert caught.value.reason is CancelReason.LEASE_LOST
    assert hb.last_success is not None
    assert 0.6 <= anyio.current_time() - hb.last_success < 0.6 + LATE


async def test_a_fresh_clients_hung_first_call_gets_a_second_attempt_and_the_lease_is_kept(
    dp: LocalDataPipeline, events: EventLog
) -> None:
    """A new client whose very first call (the acknowledgement) never answers: once its
    session is built, a second attempt goes beside it, and the task keeps its lease."""
    task_id = dp.add_task()
    dp.inject(Fault.hang(), task_id=task_id, times=1)
    async with make_client(dp) as fresh:
        with anyio.fail_after(20):
            async with Heartbeat(fresh, task_id, interval=0.5, lease_timeout=3) as hb:
                await anyio.sleep(4)  # longer than the lease
    assert hb.cancel_reason is None
    assert [e.task_id for e in events.of(EventKind.HEDGED)][:1] == [task_id]
    assert dp.attempt(task_id).status.value == "RUNNING"
