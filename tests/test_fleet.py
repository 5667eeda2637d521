"""A fleet of clients sharing one account's limit: pacing by lease need, the rate each client
learns, the urgent call, and the lease-margin signal. Under trio's virtual clock with
in-memory clients (over HTTP: test_calls_http.py)."""

from __future__ import annotations

import collections
import itertools
import random
import statistics
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from asyncheartbeat import Heartbeat, Reporter, TaskStopped
from asyncheartbeat._reporter._pacing import LEASE_MARGIN
from asyncheartbeat._reporter._throttle import OperationRate
from asyncheartbeat.instrumentation import Event, EventKind
from asyncheartbeat.testing import MockClient, MockServiceError

from .conftest import Account, EventLog

pytestmark = pytest.mark.anyio

REPORT = "ReportTaskProgress"


class Fleet:
    """Worker "processes" (each a `Reporter` on its own client) sharing one `Account`, with
    a note of the leases they lose and of every lease margin their reports are answered at."""

    def __init__(self, account: Account, interval: float, lease: float) -> None:
        self.account, self.interval, self.lease = account, interval, lease
        self.lost: list[str] = []
        self.margins: list[float] = []
        self.started = 0

    def hook(self, event: Event) -> None:
        if event.kind is EventKind.ANSWERED and event.lease_left is not None:
            self.margins.append(event.lease_left)

    async def worker(self, name: str, tasks: int, start: float, stop: float) -> None:
        """Join at ``start`` with ``tasks`` heartbeats of its own, and leave at ``stop``."""
        await anyio.sleep_until(start)
        reporter = Reporter(
            MockClient(self.account, max_pool_connections=50),
            hooks=[self.hook],
            random_source=random.Random(name),
        )

        async def job(n: int) -> None:
            try:
                async with Heartbeat(
                    reporter, f"{name}-{n}", interval=self.interval, lease_timeout=self.lease
                ):
                    await anyio.sleep_until(stop)
            except TaskStopped as stopped:
                self.lost.append(str(stopped))

        async with anyio.create_task_group() as tg:
            for n in range(tasks):
                self.started += 1
                tg.start_soon(job, n)


def throttled_once_at(at: float) -> Any:
    """A MockClient handler answering every report, but the first at or after ``at`` with
    ThrottlingException."""
    throttle_once = [True]

    def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        if anyio.current_time() >= at and throttle_once:
            throttle_once.clear()
            raise MockServiceError("ThrottlingException", "Rate exceeded")
        return {"canceled": False}

    return answer


@pytest.mark.parametrize("workers", [8, 16])
async def test_a_fleet_sharing_one_account_keeps_every_lease_as_workers_join_and_leave(
    workers: int,
) -> None:
    """Worker clients that never talk share an account with capacity ÷ need 1.25 (4 times
    what the interval asks): joining over 12 s, a quarter leaving at half time as fresh ones
    join, they lose no lease, and at most a quarter of the answers are throttles."""
    interval, lease, duration = 4.0, 25.0, 150.0
    tasks = int(10 * lease / 1.25) // workers
    fleet = Fleet(Account(), interval, lease)
    leaving = max(1, workers // 4)
    async with anyio.create_task_group() as tg:
        for k in range(workers):
            stop = duration / 2 + k if k < leaving else duration
            tg.start_soon(fleet.worker, f"w{k}", tasks, 12 * k / workers, stop)
        for j in range(leaving):
            tg.start_soon(fleet.worker, f"fresh{j}", tasks, duration / 2 + j, duration)
    assert fleet.lost == []
    assert fleet.started == (workers + leaving) * tasks
    assert fleet.account.throttled <= 0.25 * fleet.account.answered
    assert min(fleet.margins) > 0


def start_heartbeats(
    tg: anyio.abc.TaskGroup,
    reporter: Reporter,
    count: int,
    *,
    interval: float,
    lease_timeout: float,
    seconds: float,
) -> None:
    """Start ``count`` heartbeats (``task-0``, ``task-1``, ...) on ``reporter`` in ``tg``,
    each around a body that sleeps ``seconds``."""

    async def job(n: int) -> None:
        async with Heartbeat(reporter, f"task-{n}", interval=interval, lease_timeout=lease_timeout):
            await anyio.sleep(seconds)

    for n in range(count):
        tg.start_soon(job, n)


async def test_throttled_reports_stretch_towards_the_lease_and_come_back_to_the_interval(
    events: EventLog,
) -> None:
    """100 heartbeats asking 25 reports/s of an account allowing 10/s: their reports are
    due further apart (about one per 2.5 intervals, never past lease ÷ LEASE_MARGIN), so that
    they go when due instead of late in the client's queue; once the limit is lifted, they
    go once per interval again."""
    interval, lease = 4.0, 25.0
    account = Account(rate=10)
    client = MockClient(account, max_pool_connections=50)
    reporter = Reporter(client, random_source=random.Random(1))

    def gaps(since: float, until: float) -> list[float]:
        times: dict[str | None, list[float]] = collections.defaultdict(list)
        for call in client.calls:
            if since <= call.received_at < until:
                times[call.task_id].append(call.received_at)
        return [b - a for each in times.values() for a, b in itertools.pairwise(each)]

    async with anyio.create_task_group() as tg:
        start_heartbeats(tg, reporter, 100, interval=interval, lease_timeout=lease, seconds=900)
        await anyio.sleep(100)
        seen = len(events)
        await anyio.sleep(200)
        delays = [e.delay for e in events[seen:] if e.kind is EventKind.SCHEDULED]
        account.limiter = Account(rate=1000, burst=1000).limiter  # capacity is back

    paced = gaps(100, 300)
    assert statistics.median(paced) >= 2 * interval
    assert max(paced) <= lease / LEASE_MARGIN + interval
    assert statistics.median(d for d in delays if d is not None) < interval / 2, (
        "paced reports go when they are due, not late in a queue"
    )
    back = gaps(800, 900)
    assert back
    assert all(g == pytest.approx(interval) for g in back)


async def test_without_throttling_reports_go_once_per_interval() -> None:
    """An account that never throttles: every report is one interval after the last."""
    client = MockClient(max_pool_connections=50)
    reporter = Reporter(client)

    async with anyio.create_task_group() as tg:
        start_heartbeats(tg, reporter, 50, interval=4, lease_timeout=25, seconds=100)
    times = [c.received_at for c in client.calls if c.task_id == "task-7"]
    gaps = [round(b - a, 9) for a, b in itertools.pairwise(times)]
    assert len(gaps) >= 24
    assert set(gaps) == {4.0}


async def test_the_first_throttled_report_slows_the_client_to_what_its_leases_need(
    events: EventLog,
) -> None:
    """Throttled once, a client's rate drops at once to LEASE_MARGIN reports per lease per
    heartbeat, the least that keeps every lease, and finds its share from there."""
    reporter = Reporter(MockClient(throttled_once_at(8), max_pool_connections=50))

    async with anyio.create_task_group() as tg:
        start_heartbeats(tg, reporter, 100, interval=4, lease_timeout=25, seconds=20)
    [throttled] = events.of(EventKind.THROTTLED)
    assert throttled.rate == pytest.approx(LEASE_MARGIN * 100 / 25)


async def test_the_rate_grows_back_only_while_the_client_asks_for_more() -> None:
    """After a throttle, answered reports raise the client's rate up to what its heartbeats
    ask for, and no further: a rate above it would hold nothing back from a later surge."""
    reporter = Reporter(MockClient(throttled_once_at(20), max_pool_connections=50))

    async with anyio.create_task_group() as tg:
        # 10 reports/s asked, from a floor of 4.8 once throttled
        start_heartbeats(tg, reporter, 100, interval=10, lease_timeout=25, seconds=290)
        await anyio.sleep(280)
        rate = reporter.rate(REPORT)
    assert rate is not None
    assert 10 <= rate <= 10 + 0.05


async def test_a_call_about_to_miss_its_deadline_goes_whatever_the_clients_rate() -> None:
    """A client slowed to one call per 10 s, with calls queued for a minute: a call whose
    deadline is nearer than three turns goes at once, not after the queue."""
    rate = OperationRate(REPORT)
    rate.throttled(sending=0.2)  # the least rate, 0.1 calls/s
    went: dict[str, float] = {}

    async def call(name: str, deadline: float) -> None:
        if await rate.pace(deadline):
            went[name] = anyio.current_time()

    async with anyio.create_task_group() as tg:
        for n in range(6):
            tg.start_soon(call, f"patient-{n}", 1000.0)
        await anyio.lowlevel.checkpoint()
        tg.start_soon(call, "urgent", 25.0)
    assert went["urgent"] < 10  # before the next turn, not a minute later
    assert len(went) == 7


async def test_an_answered_report_tells_how_much_of_its_lease_was_left(
    events: EventLog,
) -> None:
    """Each answered report carries the share of the lease left when it was answered: none
    for the acknowledgement (no lease held yet), then 0.8 a minute into a five-minute lease."""
    async with Heartbeat(MockClient(), "task-1", interval=60, lease_timeout=300):
        await anyio.sleep(130)
    margins = [e.lease_left for e in events.of(EventKind.ANSWERED, "task-1")]
    assert margins[0] is None
    assert margins[1:] == [pytest.approx(0.8)] * (len(margins) - 1)
    assert len(margins) >= 3
