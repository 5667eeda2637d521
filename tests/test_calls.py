"""The reporter's rules for calls, exactly, under trio's virtual clock with an in-memory client."""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from asyncheartbeat import CancelReason, Heartbeat, HeartbeatError, Reporter, TaskStopped
from asyncheartbeat._reporter._admission import FIRST_CALL_ALONE, MIN_LIMIT, Admission
from asyncheartbeat._reporter._pacing import LEASE_MARGIN
from asyncheartbeat._reporter._queue import TurnQueue
from asyncheartbeat._reporter._throttle import OperationRate
from asyncheartbeat._service import Answered
from asyncheartbeat.instrumentation import Event, EventKind
from asyncheartbeat.testing import MockClient, MockServiceError

from .conftest import Account, EventLog

pytestmark = pytest.mark.anyio


class Service:
    """A service answering after ``latency`` seconds, with a note of every call's fate."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.in_flight = 0
        self.most_in_flight = 0
        self.answered = 0
        self.cut = 0

    async def __call__(self, task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await anyio.sleep(self.latency)
        except BaseException:
            self.cut += 1
            raise
        finally:
            self.in_flight -= 1
        self.answered += 1
        return {"canceled": False}


async def leases_lost(reporter: Reporter, count: int, seconds: float, **timing: Any) -> list[str]:
    """Run ``count`` heartbeats on ``reporter`` around ``seconds`` of work each; return how
    those that were stopped were stopped."""
    lost: list[str] = []

    async def job(n: int) -> None:
        try:
            async with Heartbeat(reporter, f"task-{n}", **timing):
                await anyio.sleep(seconds)
        except TaskStopped as stopped:
            lost.append(str(stopped))

    async with anyio.create_task_group() as tg:
        for n in range(count):
            tg.start_soon(job, n)
    return lost


# 1. Calls bounded by the lease ------------------------------------------------------------


async def test_answers_slower_than_the_interval_keep_the_lease_and_no_call_is_cut() -> None:
    """Every answer takes 1.5 intervals: no call is abandoned, the lease holds for 10
    minutes, and only the first slow answers get a second attempt beside them."""
    service = Service(latency=90)
    async with Heartbeat(MockClient(service), "task-1", interval=60, lease_timeout=300) as hb:
        await anyio.sleep(600)
        cut_before_the_end = service.cut
    assert hb.cancel_reason is None
    assert cut_before_the_end == 0
    assert service.answered >= 6
    assert service.most_in_flight <= 2


async def test_a_report_whose_answer_would_come_after_the_lease_goes_at_once() -> None:
    """Answers take 70 s, the lease 180 s, the interval 60 s: a report on the next slot
    would be answered after the lease ran out, so each goes as soon as the last is answered,
    and the lease holds for 20 minutes."""
    service = Service(latency=70)
    async with Heartbeat(MockClient(service), "task-1", interval=60, lease_timeout=180) as hb:
        await anyio.sleep(1200)
        cut_before_the_end = service.cut
    assert hb.cancel_reason is None
    assert cut_before_the_end == 0


async def test_a_new_clients_first_call_goes_alone_and_is_not_hedged_while_it_builds_the_session(
    events: EventLog,
) -> None:
    """The first call of a new client builds its HTTP session: it goes alone for a moment,
    with no second attempt beside it meanwhile; a slow first answer then holds the others
    back no longer than that moment."""
    service = Service(latency=5)  # a slow service, or a slow first answer
    reporter = Reporter(MockClient(service))

    async def job(n: int) -> None:
        async with Heartbeat(reporter, f"task-{n}", interval=2, lease_timeout=20, call_timeout=1):
            await anyio.sleep(1)

    async with anyio.create_task_group() as tg:
        for n in range(10):
            tg.start_soon(job, n)
            await anyio.lowlevel.checkpoint()
        await anyio.sleep(FIRST_CALL_ALONE * 0.9)
        assert service.in_flight == 1
        await anyio.sleep(FIRST_CALL_ALONE * 0.2)
        assert service.in_flight == 10, "the others go without waiting for the first answer"
    hedges = events.of(EventKind.HEDGED)
    assert all(e.delay is not None and e.delay >= FIRST_CALL_ALONE for e in hedges), hedges


async def test_a_new_clients_hung_first_call_holds_the_others_back_only_briefly() -> None:
    """The first call of a new client hangs: the others wait for it a quarter of their
    time at most, then go, and the hung one gets its second attempt once one answered."""
    first = True

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        nonlocal first
        if first:
            first = False
            await anyio.sleep_forever()
        await anyio.sleep(0.1)
        return {"canceled": False}

    reporter = Reporter(MockClient(answer, max_pool_connections=32))
    assert (
        await leases_lost(reporter, 20, 2, interval=0.1, lease_timeout=0.6, call_timeout=0.1) == []
    )


async def test_a_service_slower_than_a_clients_limit_gets_the_calls_it_needs() -> None:
    """20 heartbeats on a new client, answers taking 3 s, a lease of 8 s: on a loop that does
    not lag, the limit grows with the calls waiting instead of holding them back, and every
    lease is kept (the naive loop keeps them all)."""
    service = Service(latency=3)
    reporter = Reporter(MockClient(service, max_pool_connections=22))
    assert await leases_lost(reporter, 20, 20, interval=2, lease_timeout=8) == []


async def test_a_hung_call_costs_one_call_timeout_not_the_lease() -> None:
    """Calls that never answer are stood beside, not waited out: the lease holds."""
    hung = {1, 2}

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        if len(client.calls) - 1 in hung:
            await anyio.sleep_forever()
        return {"canceled": False}

    client = MockClient(answer)
    async with Heartbeat(client, "task-1", interval=10, lease_timeout=45, call_timeout=5) as hb:
        await anyio.sleep(60)
    assert hb.cancel_reason is None
    start = client.calls[0].received_at
    assert [c.received_at - start for c in client.calls[:4]] == [0, 10, 15, 20]


async def test_a_hung_call_sent_while_others_wait_still_gets_a_second_attempt() -> None:
    """A report that hangs while other calls wait for a place is stood beside once the
    client has a place to spare: a busy moment does not turn a dead connection into a lost
    lease."""
    hung = {f"task-{n}" for n in range(5, 10)}
    answered_once: set[str] = set()

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        if task_id in hung and task_id not in answered_once:
            answered_once.add(task_id)
            await anyio.sleep_forever()
        await anyio.sleep(0.5)  # long enough for the line to be full when the hung ones go
        return {"canceled": False}

    reporter = Reporter(MockClient(answer, max_pool_connections=100))
    assert await leases_lost(reporter, 30, 20, interval=1, lease_timeout=10, call_timeout=1) == []


async def test_the_acknowledgement_gives_up_after_the_services_two_minutes() -> None:
    """A task not acknowledged within 2 minutes is the service's again, whatever the lease."""

    def fail(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        raise MockServiceError("InternalServiceError", status=500)

    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(MockClient(fail), "task-1", interval=60, lease_timeout=600):
            pytest.fail("the body ran")
    assert caught.value.reason is CancelReason.LEASE_LOST
    assert anyio.current_time() == pytest.approx(120)


# 2. Admission and 3. scheduling by lease ------------------------------------------------------


async def test_the_call_whose_lease_ends_first_goes_first() -> None:
    """Waiting callers are served earliest deadline first; one whose deadline passes leaves."""
    queue = TurnQueue()
    free = False
    served: list[str] = []

    async def wait(name: str, deadline: float) -> None:
        if await queue.wait_turn(deadline, lambda now: 0.0 if free else float("inf")):
            served.append(name)

    async with anyio.create_task_group() as tg:
        for name, deadline in [("late", 30.0), ("first", 10.0), ("gone", 2.0), ("next", 20.0)]:
            tg.start_soon(wait, name, deadline)
        await anyio.sleep(5)
        free = True
        queue.wake()
    assert served == ["first", "next", "late"]


async def test_the_limit_shrinks_when_the_loop_lags_but_not_for_a_slow_service() -> None:
    """A lagging event loop takes a quarter off the limit (once a second, never below the
    floor); slow answers do not."""
    admission = Admission(pool=200)
    admission.first_answer()
    for _ in range(300):
        assert await admission.enter(deadline=100)
        admission.leave(answered=True)
    assert admission.limit == MIN_LIMIT, "grows only while it holds calls back"
    admission.limit = 100.0
    admission.loop_lag(0.5, anyio.current_time())
    admission.loop_lag(0.5, anyio.current_time())
    assert admission.limit == 75
    await anyio.sleep(1)
    admission.loop_lag(0.05, anyio.current_time())
    assert admission.limit == 75
    for _ in range(20):
        admission.loop_lag(0.5, anyio.current_time())
        await anyio.sleep(1)
    assert admission.limit == MIN_LIMIT


async def test_a_call_about_to_miss_its_lease_goes_beyond_the_learned_limit() -> None:
    """On a loop that lags, the learned limit stays low; a report that would otherwise be
    sent too late for its answer to count takes a free connection beyond it, and no lease
    is lost."""
    service = Service(latency=1)
    reporter = Reporter(MockClient(service, max_pool_connections=100))
    lost: list[str] = []

    async def lagging_loop() -> None:
        while True:
            reporter.calls.admission.loop_lag(0.5, anyio.current_time())
            await anyio.sleep(0.5)

    async def job(n: int) -> None:
        try:
            async with Heartbeat(reporter, f"task-{n}", interval=1, lease_timeout=5):
                await anyio.sleep(20)
        except TaskStopped as stopped:
            lost.append(str(stopped))

    async with anyio.create_task_group() as tg:
        tg.start_soon(lagging_loop)
        async with anyio.create_task_group() as jobs:
            for n in range(100):  # 20 reports/s needed; 16 at a time, each 1 s, give 16/s
                jobs.start_soon(job, n)
        tg.cancel_scope.cancel()
    assert lost == []
    assert reporter.calls.admission.limit < 2 * MIN_LIMIT, "the lag kept the learned limit down"
    assert service.most_in_flight > 2 * MIN_LIMIT, "and urgent calls went beyond it"


async def test_every_place_freed_goes_to_a_waiting_call_at_once() -> None:
    """Calls ending together hand all their places to the callers waiting, in the same step:
    on a busy loop a place left for its waiter to claim stays empty until that waiter runs."""
    admission = Admission(pool=10)
    admission.first_answer()
    for _ in range(10):
        assert await admission.enter(deadline=100)
    admitted: list[int] = []

    async def wait(n: int) -> None:
        if await admission.enter(deadline=100 + n):
            admitted.append(n)

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(wait, n)
        await anyio.sleep(1)
        for _ in range(3):
            admission.leave(answered=True)
        assert admission.in_flight == 10, "the three places are taken before any waiter runs"
        await anyio.sleep(1)
        assert sorted(admitted) == [0, 1, 2], "the most urgent three"
        tg.cancel_scope.cancel()
    assert admission.in_flight == 10


# asyncio's own Task.cancel() reaches a task even after its wake-up was scheduled.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_place_handed_to_a_cancelled_caller_goes_to_the_next() -> None:
    """A caller cancelled just after it was handed a place gives it on, so none is lost."""
    admission = Admission(pool=1)
    deadline = anyio.current_time() + 100
    assert await admission.enter(deadline)
    first = asyncio.create_task(admission.enter(deadline))
    second = asyncio.create_task(admission.enter(deadline))
    await asyncio.sleep(0)
    admission.leave(answered=True)  # handed to the first caller...
    first.cancel()  # ...which is cancelled before it runs
    with anyio.fail_after(5):
        assert await second
    assert first.cancelled()
    assert admission.in_flight == 1


async def test_calls_beyond_the_learned_limit_wait_their_turn() -> None:
    """A new client lets one call in flight until its first answer (or a moment for the
    session), then up to the floor, never beyond the pool."""
    service = Service(latency=1)
    reporter = Reporter(MockClient(service))

    async def report(n: int) -> None:
        result = await reporter.calls.call(
            "ReportTaskProgress", {"taskId": f"t{n}", "fields": []}, deadline=1000
        )
        assert not isinstance(result, Exception)

    async with anyio.create_task_group() as tg:
        for n in range(40):
            tg.start_soon(report, n)
        await anyio.sleep(FIRST_CALL_ALONE * 0.9)
        assert service.in_flight == 1
    assert service.most_in_flight == min(MIN_LIMIT, 10)  # MockClient's pool is unknown: 10


# 4. Throttling -------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity_over_need", [2.5, 1.5, 1.25])
async def test_throttling_slows_the_whole_client_and_keeps_every_lease(
    capacity_over_need: float,
) -> None:
    """100 heartbeats asking 25 reports/s of a service allowing 10/s (burst 100): no lease
    is lost, and few answers are throttles once the client has learned the rate."""
    lease = 100 / (10 / capacity_over_need)  # 100 tasks, one report per lease each
    service = Account()
    reporter = Reporter(MockClient(service, max_pool_connections=50))
    assert await leases_lost(reporter, 100, 300, interval=4, lease_timeout=lease) == []
    assert service.throttled <= 0.25 * service.answered
    rate = reporter.rate("ReportTaskProgress")
    assert rate is not None
    assert rate >= LEASE_MARGIN * 100 / lease * 0.999, "never below what keeps every lease"


async def test_a_throttled_call_waits_for_the_clients_turn_and_is_not_a_failure(
    events: EventLog,
) -> None:
    """Three throttles in a row: the report waits its turn, no retry is counted, no lease
    lost, and the service's spacing is kept afterwards."""
    throttles = 3

    def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        nonlocal throttles
        if len(client.calls) > 1 and throttles:
            throttles -= 1
            raise MockServiceError("ThrottlingException")
        return {"canceled": False}

    client = MockClient(answer)
    async with Heartbeat(client, "task-1", interval=1, lease_timeout=30) as hb:
        await anyio.sleep(10)
    assert hb.cancel_reason is None
    assert len(events.of(EventKind.THROTTLED)) == 3
    assert not events.of(EventKind.RETRIED)
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(client.calls)]
    assert all(gap > 0 for gap in gaps[1:4]), "a throttled call waits a turn before it goes again"


async def test_a_call_throttled_again_and_again_yields_its_turn_only_while_it_can_wait() -> None:
    """Throttled three times in a row, a call waits behind the others, but never so far back
    that its own deadline passes first: the service throttles the account, not the call."""
    rate = OperationRate("ReportTaskProgress")
    rate.throttled(sending=20.0)  # 10 calls/s, one turn every 0.1 s
    served: list[str] = []

    async def call(name: str, deadline: float, *, back_of_line: bool = False) -> None:
        if await rate.pace(deadline, back_of_line=back_of_line):
            served.append(name)

    async with anyio.create_task_group() as tg:
        for n in range(50):  # five seconds of turns, all later than the urgent call's deadline
            tg.start_soon(call, f"patient-{n}", 100.0)
        await anyio.lowlevel.checkpoint()
        tg.start_soon(functools.partial(call, "urgent", 2.0, back_of_line=True))
        tg.start_soon(functools.partial(call, "yielding", 90.0, back_of_line=True))
    assert "urgent" in served[:20], served.index("urgent") if "urgent" in served else served
    assert served[-1] == "yielding"


# 5. Errors classified -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mistake",
    [TypeError("unexpected keyword"), AttributeError("'NoneType' object"), RuntimeError("loop")],
)
async def test_a_programming_mistake_fails_at_once(mistake: Exception) -> None:
    """TypeError, AttributeError or RuntimeError from the call is not retried for a lease."""

    def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        raise mistake

    with pytest.raises(HeartbeatError, match="This is not retried") as caught:
        async with Heartbeat(MockClient(answer), "task-1", interval=60, lease_timeout=300):
            pytest.fail("the body ran")
    assert caught.value.__cause__ is mistake
    assert anyio.current_time() == 0


async def test_a_mistake_in_the_background_stops_the_work_with_it() -> None:
    """A mistake met by a later report stops the body and comes out as HeartbeatError."""

    def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        if len(client.calls) > 1:
            raise TypeError("report_task_progress() got an unexpected keyword argument")
        return {"canceled": False}

    client = MockClient(answer)
    with pytest.raises(HeartbeatError, match="unexpected keyword"):
        async with Heartbeat(client, "task-1", interval=60, lease_timeout=300):
            await anyio.sleep_forever()
    assert anyio.current_time() == 60


async def warm_layer(answer: Any) -> Reporter:
    """A reporter over ``answer`` that has had its first answer, so that it may hedge."""
    reporter = Reporter(MockClient(answer))
    warm_up = {"taskId": "warm-up", "fields": []}
    assert isinstance(
        await reporter.calls.call("ReportTaskProgress", warm_up, deadline=1), Answered
    )
    return reporter


async def when_the_service_stops_it(reporter: Reporter) -> float:
    """Run a heartbeat on ``reporter`` (interval 10, lease 60, call_timeout 5) around 100 s of
    work; assert that a ``canceled: true`` stopped it, and return when."""
    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(reporter, "task-1", interval=10, lease_timeout=60, call_timeout=5):
            await anyio.sleep(100)
    assert caught.value.reason is CancelReason.REQUESTED
    return anyio.current_time()


async def test_an_acknowledgement_answered_beside_a_retried_first_attempt_is_acknowledged() -> None:
    """The first attempt fails late and is retried; the attempt sent beside it is answered
    meanwhile: the task is acknowledged then, and the retry is let go."""
    calls = 0
    in_flight = 0

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        nonlocal calls, in_flight
        calls += 1
        if task_id == "warm-up":
            return {"canceled": False}
        in_flight += 1
        try:
            if calls == 2:  # the first attempt fails after 6 s...
                await anyio.sleep(6)
                raise MockServiceError("InternalServiceError", status=500)
            if calls == 3:  # ...the attempt beside it, sent at 5 s, is answered at 8 s
                await anyio.sleep(3)
                return {"canceled": False}
            await anyio.sleep_forever()  # and the retry, if its backoff ended by then, hangs
            raise AssertionError("unreachable")
        finally:
            in_flight -= 1

    reporter = await warm_layer(answer)
    started = anyio.current_time()
    async with Heartbeat(reporter, "task-1", interval=60, lease_timeout=300, call_timeout=5) as hb:
        assert anyio.current_time() - started == 8
        await anyio.lowlevel.checkpoint()
        assert in_flight == 0
    assert hb.cancel_reason is None
    assert hb.beats == 1


async def test_a_cancel_heard_beside_a_retried_report_stops_the_work_at_once() -> None:
    """A report fails late and is retried; the attempt sent beside it hears canceled: true
    meanwhile: the work stops then, not when the retry is answered or the lease runs out."""
    reports = 0

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        nonlocal reports
        if task_id == "warm-up":
            return {"canceled": False}
        reports += 1
        if reports == 2:  # the first regular report, at 10 s, fails after 6 s...
            await anyio.sleep(6)
            raise MockServiceError("InternalServiceError", status=500)
        if reports == 3:  # ...the attempt beside it, sent at 15 s, hears the cancel at 17 s
            await anyio.sleep(2)
            return {"canceled": True}
        if reports == 4:  # and the retry hangs
            await anyio.sleep_forever()
        return {"canceled": False}

    reporter = await warm_layer(answer)
    started = anyio.current_time()
    assert await when_the_service_stops_it(reporter) - started == 17


@pytest.mark.parametrize("run", range(10))  # trio orders the two answers at random
async def test_a_cancel_read_beside_in_the_step_the_report_is_answered_stops_the_work(
    run: int,
) -> None:
    """The report's retry is answered canceled: false at the moment the attempt beside it
    hears canceled: true: if that answer was read, the cancel stands and the work stops
    then; if the retry's answer came first, the attempt is let go, and the next report
    hears it."""
    reports = 0
    read: list[bool] = []

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        nonlocal reports
        if task_id == "warm-up":
            return {"canceled": False}
        reports += 1
        if reports == 1:
            return {"canceled": False}
        if reports == 2:  # the first regular report, at 10 s, fails after 6 s...
            await anyio.sleep(6)
            raise MockServiceError("InternalServiceError", status=500)
        if reports in (3, 4):  # ...the attempt beside it and the retry are answered at 20 s
            await anyio.sleep_until(started + 20)
            read.append(reports == 3)
            return {"canceled": reports == 3}
        return {"canceled": True}

    reporter = await warm_layer(answer)
    started = anyio.current_time()
    stopped_after = await when_the_service_stops_it(reporter) - started
    assert (stopped_after == 20) if any(read) else (20 < stopped_after <= 30), (read, stopped_after)


async def test_a_cancel_heard_by_an_attempt_that_outlived_its_report_stops_the_work() -> None:
    """An attempt sent beside a report's retry is kept when the retry is answered (its answer
    could still move the lease), and hears canceled: true later: the work stops then."""
    reports = 0

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        nonlocal reports
        if task_id == "warm-up":
            return {"canceled": False}
        reports += 1
        if reports == 2:  # the first regular report, at 10 s, fails at 11 s
            await anyio.sleep(1)
            raise MockServiceError("InternalServiceError", status=500)
        if reports == 3:  # its retry is answered at 20 s (the next report is due after 21 s)
            await anyio.sleep_until(started + 20)
        if reports == 4:  # the attempt beside the retry hears the cancel at 20.5 s
            await anyio.sleep_until(started + 20.5)
            return {"canceled": True}
        return {"canceled": False}

    reporter = await warm_layer(answer)
    started = anyio.current_time()
    assert await when_the_service_stops_it(reporter) - started == 20.5


@pytest.mark.parametrize("run", range(10))  # trio orders the answer and the timer at random
async def test_a_report_answered_as_its_second_attempt_is_due_gets_none(
    run: int, events: EventLog
) -> None:
    """A report answered at the moment its second attempt was due: none is sent."""
    calls: list[str] = []

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        calls.append(task_id)
        if len(calls) == 3:  # the first regular report, at 10 s, is answered at 15 s
            await anyio.sleep(5)
        return {"canceled": False}

    reporter = await warm_layer(answer)
    async with Heartbeat(reporter, "task-1", interval=10, lease_timeout=60, call_timeout=5):
        await anyio.sleep(18)
    assert calls == ["warm-up", "task-1", "task-1"]
    assert not events.of(EventKind.HEDGED)


async def test_a_late_fatal_answer_to_a_second_attempt_stops_the_work() -> None:
    """The report answers first, then the attempt beside it hears that the task is gone:
    that is the service's latest word, so the work stops and nothing more is reported."""
    calls = 0

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first regular report is slow...
            await anyio.sleep(7)
        if calls == 3:  # ...and the attempt beside it hears, later, that the task is gone
            await anyio.sleep(3)
            raise MockServiceError("TaskNotFoundException")
        return {"canceled": False}

    with pytest.raises(TaskStopped) as caught:
        async with Heartbeat(MockClient(answer), "task-1", interval=10, lease_timeout=60,
                             call_timeout=5):  # fmt: skip
            await anyio.sleep(100)
    assert caught.value.reason is CancelReason.TASK_NOT_FOUND
    assert calls == 3


async def test_a_mistake_met_by_a_second_attempt_is_raised_plainly() -> None:
    """A programming mistake met by the second attempt beside a hung report stops the work
    with HeartbeatError, as one met by any report does, never inside an ExceptionGroup."""
    calls = 0

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first regular report hangs...
            await anyio.sleep_forever()
        if calls == 3:  # ...and the attempt beside it meets a mistake
            raise TypeError("unexpected keyword argument")
        return {"canceled": False}

    with pytest.raises(HeartbeatError, match="TypeError"):
        async with Heartbeat(MockClient(answer), "task-1", interval=10, lease_timeout=60,
                             call_timeout=5):  # fmt: skip
            await anyio.sleep(100)
    assert calls == 3


async def test_a_client_whose_method_is_not_a_coroutine_is_refused() -> None:
    """A sync client's answer (a dict, not an awaitable) is a mistake, named as one."""

    class SyncClient:
        def report_task_progress(self, **params: Any) -> dict[str, Any]:
            return {"canceled": False}

    with pytest.raises(HeartbeatError, match="not an awaitable: a sync"):
        async with Heartbeat(SyncClient(), "task-1"):  # type: ignore[arg-type]
            pytest.fail("the body ran")


# 6. Hooks ---------------------------------------------------------------------------------------


async def test_every_outcome_is_an_event_for_the_layers_hooks(events: EventLog) -> None:
    """Answered, retried, throttled, each scheduled report's lateness, the verdict, and the
    lease's start and end reach the reporter's own hooks too."""
    script = [
        None,
        MockServiceError("InternalServiceError", status=500),
        MockServiceError("ThrottlingException"),
        None,
        MockServiceError("TaskNotFoundException"),
    ]

    def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        if error := script.pop(0):
            raise error
        return {"canceled": False}

    own: list[Event] = []
    reporter = Reporter(MockClient(answer), hooks=[own.append])
    with pytest.raises(TaskStopped):
        async with Heartbeat(reporter, "task-1", interval=10, lease_timeout=60):
            await anyio.sleep_forever()
    kinds = [e.kind for e in own]
    assert kinds == [
        EventKind.ANSWERED,
        EventKind.ACKNOWLEDGED,
        EventKind.RETRIED,
        EventKind.THROTTLED,
        EventKind.ANSWERED,
        EventKind.SCHEDULED,
        EventKind.FAILED,
        EventKind.SCHEDULED,
        EventKind.VERDICT,
        EventKind.ENDED,
    ]
    assert own[-2].reason is own[-1].reason is CancelReason.TASK_NOT_FOUND
    assert own[2].delay is not None
    assert own[3].rate is not None
    assert [e.kind for e in events] == kinds, "the global hooks see the same"


async def test_backoff_jitter_comes_from_the_layers_random_source() -> None:
    """The same seed gives the same retry delays; another seed, others."""

    async def delays(seed: int) -> list[float]:
        def fail(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
            if len(client.calls) > 1:
                raise MockServiceError("InternalServiceError", status=500)
            return {"canceled": False}

        seen: list[Event] = []
        client = MockClient(fail)
        reporter = Reporter(client, hooks=[seen.append], random_source=random.Random(seed))
        with pytest.raises(TaskStopped):
            async with Heartbeat(reporter, "task-1", interval=10, lease_timeout=60):
                await anyio.sleep_forever()
        return [e.delay for e in seen if e.kind is EventKind.RETRIED and e.delay is not None]

    first = await delays(7)
    assert len(first) >= 3
    assert await delays(7) == first
    assert await delays(8) != first
