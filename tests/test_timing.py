"""The timing rules, exactly, under trio's virtual clock with an in-memory client."""

from __future__ import annotations

import gc
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import pytest
import trio.testing
from botocore.exceptions import NoCredentialsError

from asyncheartbeat import CancelReason, Heartbeat, HeartbeatError, TaskStopped, run_with_heartbeat
from asyncheartbeat._timing import BACKOFF_START, Timing
from asyncheartbeat.instrumentation import EventKind
from asyncheartbeat.testing import MockClient, MockServiceError

from .conftest import EventLog

pytestmark = pytest.mark.anyio

TASK = "task-1"


def answering_after(seconds: float) -> MockClient:
    """A client whose every answer takes ``seconds``."""

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        await anyio.sleep(seconds)
        return {"canceled": False}

    return MockClient(answer)


def times(client: MockClient) -> list[float]:
    return [call.received_at for call in client.calls]


def gaps(client: MockClient) -> list[float]:
    at = times(client)
    return [round(b - a, 9) for a, b in itertools.pairwise(at)]


async def test_runs_under_trio_at_a_fixed_rate() -> None:
    """Reports go out at exactly 0, 10, 20 … seconds from the acknowledgement."""
    client = MockClient()
    async with Heartbeat(client, TASK, interval=10, lease_timeout=50):
        start = anyio.current_time()
        await anyio.sleep(45)
    assert [round(t - start, 9) for t in times(client)] == [0, 10, 20, 30, 40]


async def test_slow_calls_keep_the_schedule() -> None:
    """A call answered after 7 s does not move the next report off the grid."""

    client = answering_after(7)
    async with Heartbeat(client, TASK, interval=10, lease_timeout=50, call_timeout=8):
        await anyio.sleep(40)
    assert gaps(client) == [10, 10, 10, 10]


async def test_a_call_slower_than_the_interval_skips_the_slots_it_covered() -> None:
    """No burst of catch-up reports after a call that took 25 s of a 10 s interval."""
    durations = iter([0, 25])

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        await anyio.sleep(next(durations, 0))
        return {"canceled": False}

    client = MockClient(answer)
    async with Heartbeat(client, TASK, interval=10, lease_timeout=100, call_timeout=30):
        await anyio.sleep(55)
    assert [round(t - times(client)[0], 9) for t in times(client)] == [0, 10, 40, 50]


async def test_a_slow_acknowledgement_skips_the_slots_it_covered(events: EventLog) -> None:
    """An acknowledgement answered after 25 s of a 10 s interval: next report at 30 s, unwarned."""
    durations = iter([25])

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        await anyio.sleep(next(durations, 0))
        return {"canceled": False}

    client = MockClient(answer)
    async with Heartbeat(client, TASK, interval=10, lease_timeout=100, call_timeout=30):
        await anyio.sleep(10)
    assert [round(t - times(client)[0], 9) for t in times(client)] == [0, 30]
    assert not events.of(EventKind.LATE)


async def test_heartbeats_entered_together_keep_their_reports_apart(events: EventLog) -> None:
    """30 heartbeats entered at once on a one-connection client (0.1 s a call) count their
    schedules from when each acknowledgement was sent: no burst every interval, no
    false overload."""

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        await anyio.sleep(0.1)
        return {"canceled": False}

    client = MockClient(answer, max_pool_connections=1)

    async def job(n: int) -> None:
        async with Heartbeat(client, f"task-{n}", interval=5, lease_timeout=50):
            await anyio.sleep(25)

    async with anyio.create_task_group() as tg:
        for n in range(30):
            tg.start_soon(job, n)
    assert not events.of(EventKind.LATE)
    assert not events.of(EventKind.OVERLOADED)


async def test_retries_back_off_exponentially_up_to_the_interval() -> None:
    """Each retry waits at most BACKOFF_START·2ⁿ of the interval, never more than one interval."""
    failing = True

    def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        if failing and len(client.calls) > 1:
            raise MockServiceError("InternalServiceError", status=500)
        return {"canceled": False}

    client = MockClient(answer)
    async with Heartbeat(client, TASK, interval=10, lease_timeout=1000):
        await anyio.sleep(300)
        failing = False
    retry_gaps = gaps(client)[1:]
    assert len(retry_gaps) > 10
    caps = [min(10, 10 * BACKOFF_START * 2**n) for n in range(len(retry_gaps))]
    assert all(0 <= gap <= cap for gap, cap in zip(retry_gaps, caps, strict=True))


async def test_the_report_after_a_retry_waits_a_full_interval() -> None:
    """A report answered on retry is followed by the next one an interval later, not sooner."""
    answers: list[Any] = [{"canceled": False}, MockServiceError("ThrottlingException")]

    def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        result = answers.pop(0) if answers else {"canceled": False}
        if isinstance(result, Exception):
            raise result
        return result

    client = MockClient(answer)
    async with Heartbeat(client, TASK, interval=10, lease_timeout=50):
        await anyio.sleep(35)
    retry_at, after = times(client)[2], times(client)[3]
    assert after - retry_at == pytest.approx(10)


async def test_lease_is_lost_exactly_when_it_runs_out() -> None:
    """With every report failing, LEASE_LOST comes at last success + lease_timeout."""

    def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        if len(client.calls) > 1:
            raise MockServiceError("InternalServiceError", status=500)
        return {"canceled": False}

    client = MockClient(answer)
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, TASK, interval=10, lease_timeout=45) as hb:
            await anyio.sleep_forever()
    assert caught.value.reason is CancelReason.LEASE_LOST
    assert hb.last_success == times(client)[0]
    assert anyio.current_time() - times(client)[0] == pytest.approx(45)


async def test_an_acknowledgement_that_never_lands_says_how_long_it_was_tried() -> None:
    """Every report failing from the first: LEASE_LOST at 2 minutes, and the detail says
    2 minutes of acknowledging, not the 1,000 s lease it never had."""

    def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        raise MockServiceError("InternalServiceError", status=500)

    started = anyio.current_time()
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(MockClient(answer), TASK, interval=10, lease_timeout=1000):
            pytest.fail("the body must not run")
    assert caught.value.reason is CancelReason.LEASE_LOST
    assert anyio.current_time() - started == pytest.approx(120)
    assert caught.value.detail.startswith("the task was not acknowledged within 120 s; ")


async def test_a_hung_call_gets_a_second_attempt_beside_it_after_call_timeout() -> None:
    """A call unanswered for call_timeout is not cut there: a second attempt goes beside
    it, the first answer wins, and the schedule counts from the attempt answered."""

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        if len(client.calls) == 2:
            await anyio.sleep(30)  # slow, not dead
        return {"canceled": False}

    client = MockClient(answer)
    async with Heartbeat(client, TASK, interval=10, lease_timeout=60, call_timeout=5) as hb:
        await anyio.sleep(44)
    assert hb.cancel_reason is None
    assert [round(t - times(client)[0], 9) for t in times(client)] == [0, 10, 15, 25, 35]


async def test_the_lease_verdict_does_not_wait_for_a_hung_call() -> None:
    """A call hanging when the lease ends is abandoned then, with its second attempts."""

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        if len(client.calls) > 1:
            await anyio.sleep_forever()
        return {"canceled": False}

    client = MockClient(answer)
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, TASK, interval=10, lease_timeout=45, call_timeout=30):
            await anyio.sleep_forever()
    assert caught.value.reason is CancelReason.LEASE_LOST
    assert anyio.current_time() - times(client)[0] == pytest.approx(45)


async def test_beat_reports_now_and_waits_for_the_answer() -> None:
    """beat() sends a report at once and returns when it was answered."""

    client = answering_after(1)
    async with Heartbeat(client, TASK, interval=10, lease_timeout=50) as hb:
        await anyio.sleep(3)
        hb.set_field("step", "2")
        await hb.beat()
        assert hb.beats == 2
        assert client.calls[-1].fields == {"step": "2"}
        assert anyio.current_time() - times(client)[-1] == pytest.approx(1)
        await anyio.sleep(20)
    # The schedule counts from the beat: the next report is an interval after it.
    assert gaps(client)[1:] == [10, 10]


async def test_a_beat_during_a_report_with_the_same_fields_joins_it() -> None:
    """Concurrent beats with unchanged fields are carried by the report already in flight."""

    client = answering_after(2)
    async with Heartbeat(client, TASK, interval=10, lease_timeout=50) as hb:
        await anyio.sleep(9)  # entered at t=2; the report of t=10 is in flight until t=12
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(hb.beat)
        assert anyio.current_time() - times(client)[0] == pytest.approx(12)
    assert len(client.calls) == 2


async def test_a_beat_after_a_field_change_waits_for_the_next_report() -> None:
    """A beat whose fields changed after the in-flight report started gets a report of its own."""

    client = answering_after(2)
    async with Heartbeat(client, TASK, interval=10, lease_timeout=50) as hb:
        await anyio.sleep(9)  # entered at t=2; the report of t=10 is in flight until t=12
        hb.set_field("rows", "9")
        await hb.beat()
        assert client.calls[-1].fields == {"rows": "9"}
        # Never two in flight: the beat's report started when the previous one ended.
        assert [round(t - times(client)[0], 9) for t in times(client)] == [0, 10, 12]


async def test_beat_outside_the_block_is_an_error() -> None:
    """beat() before entering or after leaving raises HeartbeatError."""
    hb = Heartbeat(MockClient(), TASK, interval=10, lease_timeout=50)
    with pytest.raises(HeartbeatError, match="running"):
        await hb.beat()
    async with hb:
        pass
    with pytest.raises(HeartbeatError, match="running"):
        await hb.beat()


async def test_a_beat_waiting_when_the_task_is_cancelled_raises() -> None:
    """A beat() from outside the body learns of the cancellation instead of waiting forever."""
    answers = iter([{"canceled": False}])

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        await anyio.sleep(1)
        return next(answers, {"canceled": True})

    client = MockClient(answer)
    outcome: list[BaseException] = []
    hb = Heartbeat(client, TASK, interval=10, lease_timeout=50, raise_on_cancel=False)

    async def beat_from_elsewhere() -> None:
        try:
            await hb.beat()
        except TaskStopped as error:
            outcome.append(error)

    async with anyio.create_task_group() as tg, hb:
        tg.start_soon(beat_from_elsewhere)
        await anyio.sleep_forever()
    assert [type(e) for e in outcome] == [TaskStopped]


async def test_a_beat_answered_canceled_in_the_body_still_exits_quietly() -> None:
    """In the body, a canceled beat delivers the cancellation, so raise_on_cancel=False holds."""
    answers = iter([{"canceled": False}])
    client = MockClient(lambda task_id, fields: next(answers, {"canceled": True}))
    async with Heartbeat(client, TASK, interval=10, lease_timeout=50, raise_on_cancel=False) as hb:
        await hb.beat()
        pytest.fail("beat() returned although the task was cancelled")
    assert hb.cancel_reason is CancelReason.REQUESTED


async def test_a_late_report_is_told_with_its_delay(
    clock: trio.testing.MockClock, events: EventLog
) -> None:
    """A report firing 30 s late on a 10 s interval is told as LATE, by 30 s."""
    client = MockClient()
    async with Heartbeat(client, TASK, interval=10, lease_timeout=100):
        await anyio.sleep(5)
        clock.jump(35)  # the event loop does not run for 35 s: blocking job code
        await anyio.sleep(1)
    [late] = events.of(EventKind.LATE)
    assert late.task_id == TASK
    assert late.delay == pytest.approx(30)


async def test_a_little_lateness_is_not_called_late(
    clock: trio.testing.MockClock, events: EventLog
) -> None:
    """Lateness under max(1 s, interval/2) is normal scheduling noise: no LATE."""
    client = MockClient()
    async with Heartbeat(client, TASK, interval=10, lease_timeout=100):
        await anyio.sleep(5)
        clock.jump(9.9)  # 4.9 s late
        await anyio.sleep(1)
    assert not events.of(EventKind.LATE)
    assert [round(e.delay or 0, 9) for e in events.of(EventKind.SCHEDULED)][:1] == [4.9]


async def test_a_loop_blocked_past_the_lease_loses_it(clock: trio.testing.MockClock) -> None:
    """Blocked for longer than the lease, the heartbeat stops the work with LEASE_LOST."""
    client = MockClient()
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, TASK, interval=10, lease_timeout=50):
            clock.jump(60)
            await anyio.sleep_forever()
    assert caught.value.reason is CancelReason.LEASE_LOST
    assert len(client.calls) == 1


async def test_a_bug_in_the_heartbeat_stops_the_work_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Should the heartbeat itself fail, the body is stopped and HeartbeatError says why."""

    next_due = Timing.next_due
    calls = itertools.count()

    def broken(self: Timing, *args: float) -> float:
        if next(calls) > 0:  # past the acknowledgement, in the background loop
            raise RuntimeError("scheduler bug")
        return next_due(self, *args)

    monkeypatch.setattr(Timing, "next_due", broken)
    with pytest.raises(HeartbeatError, match="failed") as caught:
        async with Heartbeat(MockClient(), TASK, interval=10, lease_timeout=50):
            await anyio.sleep_forever()
    assert isinstance(caught.value.__cause__, RuntimeError)


async def test_keyboard_interrupt_skips_the_final_report() -> None:
    """A body ended by KeyboardInterrupt is not held up by a final report."""
    client = MockClient()
    with pytest.raises(KeyboardInterrupt):
        async with Heartbeat(client, TASK, interval=10, lease_timeout=50) as hb:
            hb.set_field("rows", "1")
            raise KeyboardInterrupt
    assert len(client.calls) == 1


async def test_fields_set_after_the_block_are_refused() -> None:
    """Setting a field once the heartbeat ended raises: it would never be reported."""
    hb = Heartbeat(MockClient(), TASK, interval=10, lease_timeout=50)
    async with hb:
        pass
    with pytest.raises(HeartbeatError, match="ended"):
        hb.set_field("late", "1")


async def test_a_heartbeat_cannot_be_entered_twice() -> None:
    """A Heartbeat is for one run of one task."""
    hb = Heartbeat(MockClient(), TASK, interval=10, lease_timeout=50)
    async with hb:
        pass
    with pytest.raises(RuntimeError, match="only once"):
        async with hb:
            pass


async def test_a_malformed_answer_is_a_failed_report(events: EventLog) -> None:
    """An answer without a boolean 'canceled' does not count as a success."""
    answers: list[Mapping[str, Any]] = [{"canceled": False}, {}, {"canceled": "yes"}]

    def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        return answers.pop(0) if answers else {"canceled": False}

    client = MockClient(answer)
    async with Heartbeat(client, TASK, interval=10, lease_timeout=50) as hb:
        await anyio.sleep(15)
    assert hb.beats == 2
    retried = events.of(EventKind.RETRIED, TASK)
    assert len(retried) == 2
    assert all("malformed" in e.description for e in retried)


async def test_unknown_client_errors_are_retried_but_local_rejections_are_final() -> None:
    """An unexpected exception is retried; botocore's NoCredentialsError is REJECTED once it
    repeats (credentials may be found on the next try)."""
    errors: list[Exception] = [
        OSError("network is unreachable"),
        NoCredentialsError(),
        NoCredentialsError(),
    ]

    def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        raise errors.pop(0)

    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(MockClient(answer), TASK, interval=10, lease_timeout=50):
            pytest.fail("the body ran")
    assert caught.value.reason is CancelReason.REJECTED
    assert "NoCredentialsError" in str(caught.value)
    assert not errors


def logged(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    """The library's log records whose ``hb_event`` is ``event``."""
    return [r for r in caplog.records if getattr(r, "hb_event", None) == event]


async def test_heartbeats_asking_more_than_the_client_delivers_are_told_overloaded(
    events: EventLog,
) -> None:
    """100 heartbeats asking 20 reports/s of a one-connection client serving 10/s: it is kept
    busy, every lease is kept, and one OVERLOADED per window names the overload."""
    served_at: list[float] = []

    async def serve(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        await anyio.sleep(0.1)
        served_at.append(anyio.current_time())
        return {"canceled": False}

    client = MockClient(serve, max_pool_connections=1)
    beats: list[int] = []

    async def job(n: int) -> None:
        async with Heartbeat(client, f"task-{n}", interval=5, lease_timeout=100) as hb:
            await anyio.sleep(60)
        beats.append(hb.beats)

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for n in range(100):
            tg.start_soon(job, n)

    assert len(beats) == 100, "a lease was lost"
    steady = [t for t in served_at if start + 20 <= t < start + 50]
    assert len(steady) >= 0.95 * 10 * 30, "the client was kept busy while all ran"
    overloaded = events.of(EventKind.OVERLOADED)
    assert 4 <= len(overloaded) <= 6, "one per 10 s window"
    assert overloaded[0].heartbeats == 100
    assert overloaded[0].asked_per_second == pytest.approx(20)
    assert not events.of(EventKind.RETRIED), "calls wait for a connection, untimed"
    assert not events.of(EventKind.FAILED)


async def test_a_failing_service_is_not_called_an_overload(
    events: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    """Errors from the service are told as retries (their log lines capped per window),
    never as overload."""

    def fail(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        if len(client.calls) > 20:  # the acknowledgements pass
            raise MockServiceError("InternalServiceError", status=500)
        return {"canceled": False}

    client = MockClient(fail)

    async def job(n: int) -> None:
        with pytest.raises(TaskStopped):
            async with Heartbeat(client, f"task-{n}", interval=1, lease_timeout=30):
                await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(job, n)

    assert not events.of(EventKind.OVERLOADED)
    retried = events.of(EventKind.RETRIED)
    assert len(retried) > 4 * 10
    # The log: at most WARNINGS_PER_WINDOW (10) retry lines per 10 s, the rest summed up.
    assert 10 <= len(logged(caplog, "retried")) <= 4 * 10
    assert logged(caplog, "warnings_suppressed")


# The stall watchdog -------------------------------------------------------------------------


async def test_a_body_without_progress_is_stopped_exactly_at_stall_timeout(
    events: EventLog,
) -> None:
    """No progress for stall_timeout after the body starts: STALLED then, told by one VERDICT."""
    client = MockClient()
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, TASK, interval=10, lease_timeout=50, stall_timeout=25) as hb:
            started = anyio.current_time()
            await anyio.sleep(1000)  # silent
    assert caught.value.reason is CancelReason.STALLED
    assert caught.value.detail == "no progress for 25 s"
    assert hb.cancel_reason is CancelReason.STALLED
    assert anyio.current_time() == started + 25
    assert [e.reason for e in events.of(EventKind.VERDICT)] == [CancelReason.STALLED]


async def test_a_body_ready_to_progress_when_the_watchdog_wakes_is_not_stalled() -> None:
    """A body whose progress falls due at the very moment of the stall deadline is not stopped:
    as on a busy loop that wakes both late, the watchdog lets every ready task run first."""
    client = MockClient()
    async with Heartbeat(client, TASK, interval=10, lease_timeout=50, stall_timeout=5) as hb:
        for _ in range(40):  # the scheduler orders tasks woken together either way
            await anyio.sleep(5)
            hb.progress()
    assert hb.cancel_reason is None


async def note_progress(hb: Heartbeat) -> None:
    hb.progress()


async def set_a_field(hb: Heartbeat) -> None:
    hb.set_field("rows", "1")


async def set_a_ref(hb: Heartbeat) -> None:
    hb.set_ref("input", "@node")


async def remove_a_field(hb: Heartbeat) -> None:
    hb.remove_field("rows")


async def beat(hb: Heartbeat) -> None:
    await hb.beat()


@pytest.mark.parametrize("make_progress", [note_progress, set_a_field, set_a_ref,
                                           remove_a_field, beat])  # fmt: skip
async def test_each_kind_of_progress_defers_the_stall(
    make_progress: Callable[[Heartbeat], Awaitable[None]],
) -> None:
    """progress(), set_field, set_ref, remove_field and beat() each restart the stall clock."""
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(
            MockClient(), TASK, interval=10, lease_timeout=50, stall_timeout=25
        ) as hb:
            started = anyio.current_time()
            await anyio.sleep(20)
            await make_progress(hb)
            await anyio.sleep(1000)  # silent
    assert caught.value.reason is CancelReason.STALLED
    assert anyio.current_time() - started == pytest.approx(45)


async def test_without_stall_timeout_a_silent_body_is_never_stopped() -> None:
    """stall_timeout=None, the default: a body silent for a day runs to its end, reported
    on schedule, and progress() does nothing."""
    client = MockClient()
    async with Heartbeat(client, TASK, interval=60, lease_timeout=300) as hb:
        hb.progress()
        await anyio.sleep(86_400 + 30)
    assert hb.cancel_reason is None
    assert len(client.calls) == 1 + 86_400 // 60


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-1, ValueError), (math.nan, ValueError), (math.inf, ValueError),
     ("30", TypeError), (True, TypeError)],
)  # fmt: skip
async def test_a_bad_stall_timeout_is_refused_naming_it(value: Any, error: type[Exception]) -> None:
    """stall_timeout must be None or a finite number of seconds above 0, as the other options."""
    with pytest.raises(error, match="stall_timeout"):
        Heartbeat(MockClient(), TASK, stall_timeout=value)


async def test_the_stall_clock_starts_when_the_body_starts() -> None:
    """An acknowledgement answered after 40 s does not count toward a 25 s stall_timeout."""
    durations = iter([40])

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        await anyio.sleep(next(durations, 0))
        return {"canceled": False}

    client = MockClient(answer)
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(
            client, TASK, interval=10, lease_timeout=100, call_timeout=50, stall_timeout=25
        ):
            started = anyio.current_time()
            await anyio.sleep(1000)  # silent
    assert caught.value.reason is CancelReason.STALLED
    assert started - times(client)[0] == pytest.approx(40)
    assert anyio.current_time() == started + 25


async def test_a_stalled_body_still_reports_its_last_fields_on_exit() -> None:
    """A stall_timeout shorter than the interval fires on time, and the fields set since the
    last report still go out on exit: a stalled task is still ours."""
    client = MockClient()
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, TASK, interval=10, lease_timeout=50, stall_timeout=3) as hb:
            started = anyio.current_time()
            await anyio.sleep(1)
            hb.set_field("step", "copy")
            await anyio.sleep(1000)  # silent
    assert caught.value.reason is CancelReason.STALLED
    assert anyio.current_time() - started == pytest.approx(4)
    assert [call.fields for call in client.calls] == [{}, {"step": "copy"}]
    assert times(client)[1] - started == pytest.approx(4)


async def test_a_stalled_task_cancelled_meanwhile_is_not_ours_to_fail(events: EventLog) -> None:
    """The final report after a stall answered canceled: true: REQUESTED replaces STALLED,
    for the task is no longer ours to report FAILED."""
    client = MockClient(lambda task_id, fields: {"canceled": len(client.calls) > 1})
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, TASK, interval=10, lease_timeout=50, stall_timeout=3) as hb:
            hb.set_field("step", "copy")
            await anyio.sleep(1000)  # silent
    assert caught.value.reason is hb.cancel_reason is CancelReason.REQUESTED
    assert [e.reason for e in events.of(EventKind.VERDICT)] == [
        CancelReason.STALLED, CancelReason.REQUESTED,
    ]  # fmt: skip


async def test_a_stalled_task_cancelled_during_its_cleanup_is_not_ours_to_fail() -> None:
    """No field changed, and the service cancels the task while the stalled body's shielded
    cleanup runs: the report sent as the block ends finds it, and REQUESTED replaces
    STALLED, so that nobody reports FAILED a task the service cancelled."""
    cancelled = False
    client = MockClient(lambda task_id, fields: {"canceled": cancelled})
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, TASK, interval=10, lease_timeout=50, stall_timeout=3):
            try:
                await anyio.sleep(1000)  # silent
            finally:
                with anyio.CancelScope(shield=True):
                    cancelled = True  # an operator cancels it now
                    await anyio.sleep(1.5)  # the cleanup
    assert caught.value.reason is CancelReason.REQUESTED


async def test_run_with_heartbeat_passes_the_stall_timeout_on() -> None:
    """fn has no heartbeat to note progress on: stall_timeout stops it that long after it
    started."""

    async def silent() -> None:
        await anyio.sleep(1000)

    started = anyio.current_time()
    with pytest.raises(TaskStopped) as caught:
        await run_with_heartbeat(
            MockClient(), TASK, silent, interval=10, lease_timeout=50, stall_timeout=7
        )
    assert caught.value.reason is CancelReason.STALLED
    assert anyio.current_time() - started == pytest.approx(7)


async def test_run_with_heartbeat_refuses_a_sync_function_before_any_report() -> None:
    """A plain function as fn: TypeError naming it, and not one report sent for the task."""
    client = MockClient()

    def count_rows() -> int:
        return 7

    with pytest.raises(TypeError, match=r"fn must be an async function: .*count_rows"):
        await run_with_heartbeat(client, TASK, count_rows)  # type: ignore[arg-type]
    assert client.calls == []


async def test_run_with_heartbeat_leaves_no_coroutine_unawaited_when_not_acknowledged() -> None:
    """A refused acknowledgement: TaskStopped, and fn's coroutine is closed, not left for a
    'never awaited' warning (which this suite turns into an error)."""

    def refuse(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        raise MockServiceError("TaskNotFoundException", status=400)

    async def job() -> None:
        pytest.fail("must not run")

    with pytest.raises(TaskStopped):
        await run_with_heartbeat(MockClient(refuse), TASK, job)
    gc.collect()


async def test_progress_in_a_tight_loop_never_stalls_nor_moves_the_reports() -> None:
    """A body noting progress a hundred times every 10 ms for 30 s, under a 50 ms
    stall_timeout: never stalled, and the reports stay on their grid."""
    client = MockClient()
    async with Heartbeat(client, TASK, interval=10, lease_timeout=50, stall_timeout=0.05) as hb:
        for _ in range(3_000):
            for _ in range(100):
                hb.progress()
            await anyio.sleep(0.01)
    assert hb.cancel_reason is None
    assert len(client.calls) >= 3
    assert set(gaps(client)) == {10}


async def test_a_stall_during_a_shielded_step_is_declared_on_time_and_delivered_after_it(
    events: EventLog,
) -> None:
    """The verdict comes at the stall time even while the body is shielded; the body is
    stopped when its shield ends, and the verdict is told once."""
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(
            MockClient(), TASK, interval=10, lease_timeout=100, stall_timeout=20
        ) as hb:
            started = anyio.current_time()
            with anyio.CancelScope(shield=True):
                await anyio.sleep(21)
                declared_while_shielded = hb.cancel_reason
                await anyio.sleep(39)
            await anyio.sleep(1000)  # silent
    assert declared_while_shielded is CancelReason.STALLED
    assert caught.value.reason is CancelReason.STALLED
    assert anyio.current_time() - started == pytest.approx(60)
    assert len(events.of(EventKind.VERDICT)) == 1


async def test_a_stall_at_the_moment_of_a_cancel_gives_the_services_verdict_once(
    events: EventLog,
) -> None:
    """The stall deadline and a canceled: true answer at the same instant: the service's
    word wins, raised, recorded and told once, in whichever order trio wakes the two
    (twenty runs), so that a runner never fails a task the service has just cancelled."""

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        if len(client.calls) < 3:
            return {"canceled": False}
        await anyio.sleep(10)  # sent at 20, answered at 30: when the body stalls
        return {"canceled": True}

    winners: set[CancelReason] = set()
    for _ in range(20):
        client = MockClient(answer)
        told_before = len(events.of(EventKind.VERDICT))
        with pytest.raises(TaskStopped) as caught:
            async with Heartbeat(
                client, TASK, interval=10, lease_timeout=50, call_timeout=15, stall_timeout=30
            ) as hb:
                started = anyio.current_time()
                await anyio.sleep(1000)  # silent
        assert anyio.current_time() - started == pytest.approx(30)
        [verdict] = events.of(EventKind.VERDICT)[told_before:]
        assert verdict.reason is caught.value.reason is hb.cancel_reason
        winners.add(verdict.reason)
    assert winners == {CancelReason.REQUESTED}


def test_the_timing_check_calls_each_value_by_the_name_it_is_given() -> None:
    """A caller with other names for the values (a command line's options) gets errors
    that use them; a value it gives no name keeps its own."""
    names = {"interval": "--interval", "lease_timeout": "--lease-timeout"}
    with pytest.raises(ValueError, match=r"^--interval must be a finite number"):
        Timing.check(0, 300, None, names=names)
    with pytest.raises(ValueError, match=r"^--lease-timeout \(100 s\) leaves no room") as caught:
        Timing.check(60, 100, 40, names=names)
    assert "more than --interval (60 s) plus call_timeout (40 s)" in str(caught.value)
