"""The heartbeat's rules, proven over real HTTP against the local Data Pipeline."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TypedDict

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest
from botocore import UNSIGNED

from asyncheartbeat import CancelReason, Heartbeat, HeartbeatError, TaskStopped, run_with_heartbeat
from asyncheartbeat.instrumentation import EventKind
from asyncheartbeat.testing import Fault, LocalDataPipeline, MockClient

from .conftest import (
    ACCESS_KEY,
    LATE,
    SECRET_KEY,
    EventLog,
    RecordingClient,
    client_config,
    make_client,
)

pytestmark = pytest.mark.asyncio


class Timing(TypedDict):
    interval: float
    lease_timeout: float


FAST: Timing = {"interval": 0.1, "lease_timeout": 0.6}


def heartbeat_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("asyncheartbeat:")]


# 1. Acknowledge first ---------------------------------------------------------------------


async def test_entering_acknowledges_before_the_body_runs(
    dp: LocalDataPipeline, client: Any
) -> None:
    """The body starts only after the first report was answered."""
    task_id = dp.add_task()
    async with Heartbeat(client, task_id, **FAST) as hb:
        assert [c.outcome for c in dp.reports(task_id)] == ["answered"]
        assert hb.beats == 1
        assert hb.last_success is not None


async def test_canceled_acknowledgement_raises_before_the_body(
    dp: LocalDataPipeline, client: Any
) -> None:
    """An acknowledgement answered canceled raises TaskStopped and the body never runs."""
    task_id = dp.add_task()
    dp.cancel_task(task_id)
    body_ran = False
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, task_id, **FAST):
            body_ran = True
    assert not body_ran
    assert caught.value.reason is CancelReason.REQUESTED
    assert caught.value.task_id == task_id
    assert len(dp.reports(task_id)) == 1


async def test_refused_acknowledgement_raises_even_without_raise_on_cancel(
    dp: LocalDataPipeline, client: Any
) -> None:
    """A context manager cannot skip its body, so a refused acknowledgement always raises."""
    task_id = dp.add_task()
    dp.forget_task(task_id)
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, task_id, raise_on_cancel=False, **FAST):
            pytest.fail("the body ran")
    assert caught.value.reason is CancelReason.TASK_NOT_FOUND


async def test_acknowledgement_retries_transient_failures(
    dp: LocalDataPipeline, client: Any
) -> None:
    """Transient failures of the acknowledgement are retried until one is answered."""
    task_id = dp.add_task()
    dp.inject(Fault.error("InternalServiceError"), task_id=task_id, times=2)
    async with Heartbeat(client, task_id, **FAST) as hb:
        outcomes = [c.outcome for c in dp.reports(task_id)]
        assert outcomes == ["error:InternalServiceError"] * 2 + ["answered"]
        assert hb.beats == 1


async def test_acknowledgement_gives_up_when_the_lease_runs_out(
    dp: LocalDataPipeline, client: Any
) -> None:
    """An acknowledgement that never succeeds raises LEASE_LOST once the lease has passed."""
    task_id = dp.add_task()
    dp.inject(Fault.error("ServiceUnavailable", status=503), task_id=task_id, times=None)
    started = anyio.current_time()
    with anyio.fail_after(2), pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, task_id, interval=0.1, lease_timeout=0.4):
            pytest.fail("the body ran")
    assert caught.value.reason is CancelReason.LEASE_LOST
    assert "ServiceUnavailable" in str(caught.value)
    assert 0.4 <= anyio.current_time() - started < 0.4 + LATE


# 2. Fixed rate ---------------------------------------------------------------------------


async def test_reports_follow_a_fixed_rate_from_the_acknowledgement(
    dp: LocalDataPipeline, client: Any
) -> None:
    """Report k is sent k intervals after the acknowledgement, without drift."""
    task_id = dp.add_task()
    recording = RecordingClient(client)
    with anyio.fail_after(3):
        async with Heartbeat(recording, task_id, interval=0.05, lease_timeout=0.5):
            await dp.wait_for_reports(task_id, 11)
    sent = recording.answered(task_id)
    # This client sees each call a moment after the layer read the time it counts from
    # (the acknowledgement's more so: a new client's first call also looks up its method
    # and event loop), so the grid is placed where the sends say it is.
    offsets = [at - k * 0.05 for k, at in enumerate(sent[:11])]
    lateness = [offset - min(offsets) for offset in offsets]
    # Each report leaves just after its slot; no drift: the tenth as close as the first.
    assert all(late < 0.03 for late in lateness), lateness


async def test_a_slow_call_does_not_push_the_schedule_back(
    dp: LocalDataPipeline, client: Any
) -> None:
    """Reports answered slowly still start on the acknowledgement's grid."""
    task_id = dp.add_task()
    recording = RecordingClient(client)
    with anyio.fail_after(3):
        async with Heartbeat(recording, task_id, interval=0.1, lease_timeout=0.6):
            dp.inject(Fault.delay(0.07), task_id=task_id, times=3)
            await dp.wait_for_reports(task_id, 6)
    sent = recording.answered(task_id)
    offsets = [at - sent[0] - k * 0.1 for k, at in enumerate(sent[:6])]
    # Pushed back, each would be 0.07 s (a slow answer) later than the last; the grid is
    # anchored as the acknowledgement goes on the wire, a few ms from where this records
    # it, either way on a loaded CPU.
    assert all(-0.02 <= offset < 0.05 for offset in offsets), offsets


# 3. Cancel on request ---------------------------------------------------------------------


async def test_canceled_answer_cancels_the_body_at_once(dp: LocalDataPipeline, client: Any) -> None:
    """canceled: true cancels the body with a reason, and TaskStopped(REQUESTED) is raised."""
    task_id = dp.add_task()
    cancel_message = ""
    with anyio.fail_after(2), pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, task_id, **FAST):
            dp.cancel_task(task_id)
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class() as cancelled:
                cancel_message = repr(cancelled)
                raise
    assert caught.value.reason is CancelReason.REQUESTED
    assert "asyncheartbeat" in cancel_message
    assert "requested" in cancel_message
    assert isinstance(caught.value.__cause__, type(None))


async def test_no_report_follows_a_canceled_answer(dp: LocalDataPipeline, client: Any) -> None:
    """The canceled answer is the last call, even when fields changed afterwards."""
    task_id = dp.add_task()
    with anyio.fail_after(2), pytest.raises(TaskStopped):
        async with Heartbeat(client, task_id, **FAST) as hb:
            dp.cancel_task(task_id)
            try:
                await anyio.sleep_forever()
            finally:
                hb.set_field("after", "cancel")
    assert not heartbeat_tasks()
    assert [c.outcome for c in dp.reports(task_id)] == ["answered", "answered"]
    assert dp.attempt(task_id).fields == {}


async def test_raise_on_cancel_false_exits_quietly_and_tells_why(
    dp: LocalDataPipeline, client: Any
) -> None:
    """With raise_on_cancel=False the block ends quietly and cancel_reason says why."""
    task_id = dp.add_task()
    with anyio.fail_after(2):
        async with Heartbeat(client, task_id, raise_on_cancel=False, **FAST) as hb:
            dp.cancel_task(task_id)
            await anyio.sleep_forever()
    assert hb.cancel_reason is CancelReason.REQUESTED


# 4. Fatal answers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_fatal", "reason", "text"),
    [
        (lambda dp, t: dp.forget_task(t), CancelReason.TASK_NOT_FOUND, "TaskNotFoundException"),
        (
            lambda dp, t: dp.delete_pipeline(dp.attempt(t).pipeline_id),
            CancelReason.PIPELINE_DELETED,
            "PipelineDeletedException",
        ),
        (
            lambda dp, t: dp.inject(Fault.error("PipelineNotFoundException"), task_id=t),
            CancelReason.PIPELINE_NOT_FOUND,
            "PipelineNotFoundException",
        ),
        (
            lambda dp, t: dp.inject(
                Fault.error("InvalidRequestException", message="field limit exceeded"), task_id=t
            ),
            CancelReason.REJECTED,
            "InvalidRequestException (HTTP 400): field limit exceeded",
        ),
        (
            lambda dp, t: dp.inject(
                Fault.error("AccessDeniedException", message="no"), task_id=t, times=None
            ),
            CancelReason.REJECTED,
            "AccessDeniedException",
        ),
        (
            lambda dp, t: dp.inject(
                Fault.error("UnrecognizedClientException"), task_id=t, times=None
            ),
            CancelReason.REJECTED,
            "UnrecognizedClientException",
        ),
        (
            lambda dp, t: dp.inject(
                Fault.error("InvalidSignatureException", status=403), task_id=t, times=None
            ),
            CancelReason.REJECTED,
            "InvalidSignatureException (HTTP 403)",
        ),
    ],
)
async def test_fatal_answers_stop_the_work_with_their_reason(
    dp: LocalDataPipeline, client: Any, make_fatal: Any, reason: CancelReason, text: str
) -> None:
    """Each fatal answer cancels the body and names its reason, code and message."""
    task_id = dp.add_task()
    with anyio.fail_after(2), pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, task_id, **FAST):
            make_fatal(dp, task_id)
            await anyio.sleep_forever()
    assert caught.value.reason is reason
    assert text in str(caught.value)
    assert caught.value.__cause__ is not None  # the client's own error, for the traceback


async def test_unsigned_requests_are_rejected(dp: LocalDataPipeline) -> None:
    """A client without credentials is refused by the service: REJECTED, naming the error."""
    task_id = dp.add_task()
    async with make_client(dp, client_config(signature_version=UNSIGNED)) as unsigned:
        with pytest.raises(TaskStopped) as caught:
            async with Heartbeat(unsigned, task_id, **FAST):
                pytest.fail("the body ran")
    assert caught.value.reason is CancelReason.REJECTED
    assert "MissingAuthenticationToken" in str(caught.value)


# 5. Transient failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault.error("InternalServiceError"), EventKind.RETRIED),
        (Fault.error("ServiceUnavailable", status=503), EventKind.RETRIED),
        (Fault.error("ThrottlingException"), EventKind.THROTTLED),
        (Fault.drop(), EventKind.RETRIED),
        (Fault.malformed(), EventKind.RETRIED),
        (Fault.hang(), EventKind.HEDGED),
    ],
    ids=["internal-error", "503", "throttling", "dropped-connection", "malformed-body", "hang"],
)
async def test_transient_failures_are_retried_without_disturbing_the_body(
    dp: LocalDataPipeline, client: Any, fault: Fault, kind: EventKind, events: EventLog
) -> None:
    """Three failed reports in a row are retried (throttled ones wait for a turn, hung ones
    get a second attempt beside them), and the body runs on to its end."""
    task_id = dp.add_task()
    # Only the hung case wants second attempts: elsewhere an answer slowed by a busy CPU
    # past a short call_timeout would get one, and meet the fault in the report's place.
    call_timeout, lease = (0.1, 1.0) if kind is EventKind.HEDGED else (0.5, 1.5)
    with anyio.fail_after(5):
        async with Heartbeat(
            client, task_id, interval=0.1, lease_timeout=lease, call_timeout=call_timeout
        ) as hb:
            dp.inject(fault, task_id=task_id, times=3)
            await dp.wait_for_calls(
                lambda _: (
                    [c.outcome for c in dp.reports(task_id)][-2:] == ["answered"] * 2
                    and len(dp.reports(task_id)) >= 6
                )
            )
    assert hb.cancel_reason is None
    assert len(events.of(kind, task_id)) == 3
    others = {EventKind.RETRIED, EventKind.THROTTLED, EventKind.HEDGED} - {kind}
    assert not [e for e in events if e.kind in others]


# 6. Lease --------------------------------------------------------------------------------


async def test_lease_is_lost_when_no_report_succeeds(dp: LocalDataPipeline, client: Any) -> None:
    """Failing reports for a whole lease cancel the body with LEASE_LOST, naming the last error."""
    task_id = dp.add_task()
    with anyio.fail_after(2), pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, task_id, interval=0.1, lease_timeout=0.5) as hb:
            dp.inject(Fault.error("InternalServiceError"), task_id=task_id, times=None)
            await anyio.sleep_forever()
    assert caught.value.reason is CancelReason.LEASE_LOST
    assert "InternalServiceError" in str(caught.value)
    assert hb.last_success is not None
    assert 0.5 <= anyio.current_time() - hb.last_success < 0.5 + LATE


async def test_lease_watchdog_does_not_wait_for_a_hung_call(
    dp: LocalDataPipeline, client: Any
) -> None:
    """A call hanging past the lease is abandoned when the lease ends, with its hedges."""
    task_id = dp.add_task()
    with anyio.fail_after(2), pytest.raises(TaskStopped) as caught:
        async with Heartbeat(
            client, task_id, interval=0.2, lease_timeout=0.5, call_timeout=0.25
        ) as hb:
            dp.inject(Fault.hang(), task_id=task_id, times=None)
            await anyio.sleep_forever()
    assert caught.value.reason is CancelReason.LEASE_LOST
    assert hb.last_success is not None
    assert 0.5 <= anyio.current_time() - hb.last_success < 0.5 + LATE


async def test_botocores_own_retries_are_bounded_by_the_lease(dp: LocalDataPipeline) -> None:
    """A client that retries inside one call is not cut at call_timeout, but the lease still
    ends it on time."""
    task_id = dp.add_task()
    retrying = client_config(retries={"mode": "standard", "total_max_attempts": 10})
    async with make_client(dp, retrying) as client:
        with anyio.fail_after(2), pytest.raises(TaskStopped) as caught:
            async with Heartbeat(
                client, task_id, interval=0.1, lease_timeout=0.5, call_timeout=0.15
            ) as hb:
                dp.inject(Fault.error("InternalServiceError"), task_id=task_id, times=None)
                await anyio.sleep_forever()
    assert caught.value.reason is CancelReason.LEASE_LOST
    assert hb.last_success is not None
    assert 0.5 <= anyio.current_time() - hb.last_success < 0.5 + LATE


async def test_call_timeout_starts_when_a_connection_is_free(
    dp: LocalDataPipeline, events: EventLog
) -> None:
    """Heartbeats queued for a small pool wait their turn untimed: no call is cut, no lease
    lost, though the line is longer than call_timeout."""
    task_ids = [dp.add_task() for _ in range(20)]
    dp.inject(Fault.delay(0.05), task_id=None, times=None)  # 2 connections: 40 calls/s
    beats: list[int] = []
    async with make_client(dp, client_config(max_pool_connections=2)) as client:
        async with anyio.create_task_group() as tg:  # open both connections: cold calls are slow
            for task_id in task_ids[:2]:
                tg.start_soon(lambda task_id: client.report_task_progress(taskId=task_id), task_id)

        async def job(task_id: str) -> None:
            async with Heartbeat(
                client, task_id, interval=0.2, lease_timeout=2.0, call_timeout=0.1
            ) as hb:
                await anyio.sleep(1.0)
            beats.append(hb.beats)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for task_id in task_ids:
                    tg.start_soon(job, task_id)
    assert not events.of(EventKind.RETRIED)
    assert not events.of(EventKind.HEDGED)
    assert len(beats) == 20
    assert sum(beats) >= 20 * 2


# 7. The body's own exception -------------------------------------------------------------------


async def test_body_exception_propagates_unchanged(dp: LocalDataPipeline, client: Any) -> None:
    """The body's exception comes out as the same object, not in an ExceptionGroup."""
    task_id = dp.add_task()
    error = KeyError("row 7")
    with pytest.raises(KeyError) as caught:
        async with Heartbeat(client, task_id, **FAST):
            raise error
    assert caught.value is error
    assert not heartbeat_tasks()


async def test_body_exception_wins_over_a_cancellation(dp: LocalDataPipeline, client: Any) -> None:
    """An exception the body raises while being cancelled is not replaced by TaskStopped."""
    task_id = dp.add_task()
    with anyio.fail_after(2), pytest.raises(RuntimeError, match="cleanup failed"):
        async with Heartbeat(client, task_id, **FAST) as hb:
            dp.cancel_task(task_id)
            try:
                await anyio.sleep_forever()
            finally:
                raise RuntimeError("cleanup failed")
    assert hb.cancel_reason is CancelReason.REQUESTED


# 8. Cancellation from outside -------------------------------------------------------------------


async def test_outer_cancel_scope_propagates_as_cancellation(
    dp: LocalDataPipeline, client: Any
) -> None:
    """An enclosing scope's cancellation is ordinary cancellation, not TaskStopped."""
    task_id = dp.add_task()
    with anyio.CancelScope() as outer:
        async with Heartbeat(client, task_id, **FAST) as hb:
            await dp.wait_for_reports(task_id, 2)
            outer.cancel()
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert hb.cancel_reason is None
    assert not heartbeat_tasks()


async def test_cancelling_the_worker_task_propagates(dp: LocalDataPipeline, client: Any) -> None:
    """asyncio's Task.cancel() reaches the caller as CancelledError; the heartbeat stops."""
    task_id = dp.add_task()
    entered = asyncio.Event()

    async def worker() -> None:
        async with Heartbeat(client, task_id, **FAST):
            entered.set()
            await asyncio.sleep(3600)

    worker_task = asyncio.create_task(worker())
    await entered.wait()
    worker_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker_task
    assert not heartbeat_tasks()


async def test_outer_cancellation_during_acknowledgement_propagates(
    dp: LocalDataPipeline, client: Any
) -> None:
    """Cancelled while acknowledging, the block neither runs its body nor raises TaskStopped."""
    task_id = dp.add_task()
    dp.inject(Fault.hang(), task_id=task_id)
    with anyio.move_on_after(0.1) as outer:
        async with Heartbeat(client, task_id, **FAST):
            pytest.fail("the body ran")
    assert outer.cancelled_caught
    assert not heartbeat_tasks()


# 9. Prompt, clean exit --------------------------------------------------------------------------


async def test_exit_does_not_wait_for_an_in_flight_call(dp: LocalDataPipeline, client: Any) -> None:
    """Leaving the block with a report hanging returns within milliseconds, nothing left running."""
    task_id = dp.add_task()
    with anyio.fail_after(2):
        async with Heartbeat(client, task_id, interval=0.05, lease_timeout=5.0, call_timeout=2.0):
            dp.inject(Fault.hang(), task_id=task_id, times=None)
            await dp.wait_for_reports(task_id, 2)
            body_ended = time.perf_counter()
    assert time.perf_counter() - body_ended < 0.02
    assert not heartbeat_tasks()


async def test_exit_does_not_wait_for_the_next_report(dp: LocalDataPipeline, client: Any) -> None:
    """Leaving the block between reports returns at once, not at the next report time."""
    task_id = dp.add_task()
    async with Heartbeat(client, task_id, interval=30, lease_timeout=100):
        body_ended = time.perf_counter()
    assert time.perf_counter() - body_ended < 0.02
    assert len(dp.reports(task_id)) == 1


async def test_exit_reports_fields_changed_since_the_last_answer(
    dp: LocalDataPipeline, client: Any
) -> None:
    """A field set just before the end is carried by one final report."""
    task_id = dp.add_task()
    async with Heartbeat(client, task_id, interval=30, lease_timeout=100) as hb:
        hb.set_field("rowsCopied", "1000")
    assert [c.fields for c in dp.reports(task_id)] == [{}, {"rowsCopied": "1000"}]
    assert dp.attempt(task_id).fields == {"rowsCopied": "1000"}


async def test_exit_with_body_exception_still_reports_changed_fields(
    dp: LocalDataPipeline, client: Any
) -> None:
    """The last progress is reported even when the body fails."""
    task_id = dp.add_task()
    with pytest.raises(ZeroDivisionError):
        async with Heartbeat(client, task_id, interval=30, lease_timeout=100) as hb:
            hb.set_ref("failedAt", "@step3")
            _ = 1 / 0
    assert dp.reports(task_id)[-1].params["fields"] == [{"key": "failedAt", "refValue": "@step3"}]


async def test_exit_sends_nothing_when_fields_are_unchanged(
    dp: LocalDataPipeline, client: Any
) -> None:
    """No final report when the last answered report already carried the fields."""
    task_id = dp.add_task()
    async with Heartbeat(client, task_id, interval=30, lease_timeout=100, fields={"a": "1"}) as hb:
        hb.set_field("a", "1")  # the same value: nothing changed
    assert len(dp.reports(task_id)) == 1


async def test_exit_after_outer_cancellation_sends_nothing(
    dp: LocalDataPipeline, client: Any
) -> None:
    """Cancelled from outside, the block does not try a final report."""
    task_id = dp.add_task()
    with anyio.CancelScope() as outer:
        async with Heartbeat(client, task_id, interval=30, lease_timeout=100) as hb:
            hb.set_field("a", "1")
            outer.cancel()
            await anyio.sleep_forever()
    assert len(dp.reports(task_id)) == 1


async def test_final_report_answered_canceled_raises(dp: LocalDataPipeline, client: Any) -> None:
    """A body that finished while its task was cancelled does not look like a success."""
    task_id = dp.add_task()
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, task_id, interval=30, lease_timeout=100) as hb:
            hb.set_field("rows", "5")
            dp.cancel_task(task_id)
    assert caught.value.reason is CancelReason.REQUESTED


async def test_final_report_is_bounded_by_call_timeout(dp: LocalDataPipeline, client: Any) -> None:
    """A final report that hangs gives up after call_timeout, with a warning, and no error."""
    task_id = dp.add_task()
    with anyio.fail_after(2):
        async with Heartbeat(
            client, task_id, interval=30, lease_timeout=100, call_timeout=0.1
        ) as hb:
            hb.set_field("rows", "5")
            dp.inject(Fault.hang(), task_id=task_id, times=None)
            body_ended = anyio.current_time()
    assert 0.1 <= anyio.current_time() - body_ended < 0.1 + LATE
    assert hb.cancel_reason is None


# 11. Blocked event loop -------------------------------------------------------------------------


async def test_a_blocked_event_loop_is_told_as_a_late_report(
    dp: LocalDataPipeline, client: Any, events: EventLog
) -> None:
    """A report fired over a second late is told, once, as LATE with by how much."""
    task_id = dp.add_task()
    async with Heartbeat(client, task_id, interval=0.1, lease_timeout=5.0):
        # Job code that blocks the event loop: exactly what the warning is for.
        time.sleep(1.15)  # noqa: ASYNC251
        await dp.wait_for_reports(task_id, 2)
    [late] = events.of(EventKind.LATE, task_id)
    assert late.delay is not None
    assert 1.0 < late.delay < 1.05 + LATE  # blocked 1.15 s, the slot 0.1 s in


# 12. Many at once ------------------------------------------------------------------------------


async def test_hundreds_of_heartbeats_share_one_client(dp: LocalDataPipeline, client: Any) -> None:
    """200 heartbeats on one client keep their own fields; cancelling one leaves the rest alone."""
    task_ids = [dp.add_task(f"task-{n}") for n in range(200)]
    outcomes: dict[str, CancelReason | None] = {}

    async def job(task_id: str) -> None:
        async with Heartbeat(
            client, task_id, interval=0.5, lease_timeout=3.0, raise_on_cancel=False
        ) as hb:
            hb.set_field("owner", task_id)
            await dp.wait_for_reports(task_id, 3)
        outcomes[task_id] = hb.cancel_reason

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for task_id in task_ids:
                tg.start_soon(job, task_id)
            await dp.wait_for_reports("task-7", 1)
            dp.cancel_task("task-7")
    assert outcomes.pop("task-7") is CancelReason.REQUESTED
    assert set(outcomes.values()) == {None}
    assert all(dp.attempt(t).fields == {"owner": t} for t in task_ids if t != "task-7")


async def test_a_body_that_progresses_keeps_its_lease_under_a_stall_timeout(
    dp: LocalDataPipeline, client: Any
) -> None:
    """A body noting progress keeps its task for many stall timeouts, every report
    answered; once silent for stall_timeout it is stopped, the task still running."""
    task_id = dp.add_task()
    with anyio.fail_after(15), pytest.raises(TaskStopped) as caught:
        async with Heartbeat(
            client, task_id, interval=0.1, lease_timeout=2.0, stall_timeout=1.0
        ) as hb:
            started = anyio.current_time()
            while len(dp.reports(task_id)) < 30:  # three stall timeouts' worth of reports
                await anyio.sleep(0.02)
                hb.progress()
            silent_from = anyio.current_time()
            progressed_for = silent_from - started
            await anyio.sleep_forever()
    assert caught.value.reason is CancelReason.STALLED
    assert progressed_for > 2.0
    assert anyio.current_time() - silent_from >= 1.0
    assert {c.outcome for c in dp.reports(task_id)} == {"answered"}
    assert dp.attempt(task_id).status.value == "RUNNING"


# 13. Logging ----------------------------------------------------------------------------------


async def test_logging_says_what_happened_and_never_the_credentials(
    dp: LocalDataPipeline, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG per report, WARNING per failure and cancellation, and no secret anywhere."""
    caplog.set_level(logging.DEBUG, logger="asyncheartbeat")
    task_id = dp.add_task()
    with anyio.fail_after(2), pytest.raises(TaskStopped):
        async with Heartbeat(client, task_id, **FAST):
            dp.inject(Fault.error("ThrottlingException"), task_id=task_id)
            await dp.wait_for_reports(task_id, 3)
            dp.forget_task(task_id)
            await anyio.sleep_forever()
    ours = [r for r in caplog.records if r.name == "asyncheartbeat"]
    levels = {r.levelname for r in ours}
    assert {"DEBUG", "WARNING"} <= levels
    assert any("answered" in r.getMessage() for r in ours if r.levelno == logging.DEBUG)
    assert any(
        "ThrottlingException" in r.getMessage() for r in ours if r.levelno == logging.WARNING
    )
    assert any("task-not-found" in r.getMessage() for r in ours if r.levelno == logging.WARNING)
    text = caplog.text
    assert SECRET_KEY not in text
    assert ACCESS_KEY not in text


async def test_a_requested_cancellation_is_logged_at_info(
    dp: LocalDataPipeline, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A cancellation the service asked for is normal: INFO, with its reason."""
    caplog.set_level(logging.INFO, logger="asyncheartbeat")
    task_id = dp.add_task()
    dp.cancel_task(task_id)
    with pytest.raises(TaskStopped):
        async with Heartbeat(client, task_id, **FAST):
            pass
    [record] = [r for r in caplog.records if r.name == "asyncheartbeat"]
    assert record.levelno == logging.INFO
    assert "requested" in record.getMessage()


# run_with_heartbeat ----------------------------------------------------------------------------


async def test_run_with_heartbeat_returns_the_result(dp: LocalDataPipeline, client: Any) -> None:
    """run_with_heartbeat awaits fn(*args) under a heartbeat and returns what it returns."""
    task_id = dp.add_task()

    async def add(a: int, b: int) -> int:
        await dp.wait_for_reports(task_id, 2)
        return a + b

    with anyio.fail_after(2):
        assert await run_with_heartbeat(client, task_id, add, 2, 3, **FAST) == 5


async def test_run_with_heartbeat_raises_task_cancelled(dp: LocalDataPipeline, client: Any) -> None:
    """run_with_heartbeat raises TaskStopped when the task is cancelled under it."""
    task_id = dp.add_task()

    async def forever() -> None:
        dp.cancel_task(task_id)
        await anyio.sleep_forever()

    with anyio.fail_after(2), pytest.raises(TaskStopped):
        await run_with_heartbeat(client, task_id, forever, **FAST)


async def test_progress_from_a_worker_thread_says_how_to_call_it() -> None:
    """progress() from a worker thread under a watchdog: HeartbeatError naming the way
    (real time: a thread's wait would let a mock clock jump to the stall)."""
    async with Heartbeat(
        MockClient(), "task-1", interval=10, lease_timeout=50, stall_timeout=30
    ) as hb:
        with pytest.raises(HeartbeatError, match=r"anyio\.from_thread\.run_sync\(hb\.progress\)"):
            await anyio.to_thread.run_sync(hb.progress)
        await anyio.to_thread.run_sync(anyio.from_thread.run_sync, hb.progress)


async def test_a_block_that_ends_after_its_lease_ran_out_raises_lease_lost(
    dp: LocalDataPipeline, client: Any
) -> None:
    """A body that blocks the loop past its lease and ends without another await does not
    end cleanly: TaskStopped(LEASE_LOST), and no last report of a task now someone else's."""
    task_id = dp.add_task()
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, task_id, **FAST) as hb:
            hb.set_field("rows", "10")
            time.sleep(FAST["lease_timeout"] + 0.4)  # noqa: ASYNC251 - the blocked loop
    assert caught.value.reason is CancelReason.LEASE_LOST
    assert "after its lease ran out" in str(caught.value)
    assert not [c for c in dp.calls if c.operation == "ReportTaskProgress"
                and c.params["fields"]]  # fmt: skip


async def test_beat_awaited_on_another_threads_loop_is_refused_naming_the_fix(
    dp: LocalDataPipeline, client: Any
) -> None:
    """beat() from a foreign event loop would hang: it raises HeartbeatError instead."""
    task_id = dp.add_task()
    async with Heartbeat(client, task_id, interval=1, lease_timeout=10) as hb:
        with anyio.fail_after(10), pytest.raises(HeartbeatError, match="from_thread"):
            await anyio.to_thread.run_sync(asyncio.run, hb.beat())
