"""The reporter: one per client, it keeps every lease of that client.

A heartbeat hands its `Lease` to its client's reporter and gets back the verdict. The
reporter owns, for all of the client's leases at once:

- the schedule: one heap of due times served by one task (`Schedule`), never a sleeping
  task per heartbeat;
- the calls: attempts, second attempts beside slow ones, retries, admission, throttling
  (`Calls`);
- the verdict (`verdict`), and the stall deadlines.

It speaks to the service only through `DataPipeline`'s seam (how a renewal is asked for,
how answers and errors read), so it does not know what ``canceled`` means.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from asyncheartbeat._clock import current_time
from asyncheartbeat._datapipeline import DataPipeline, refuse_foreign_backend, refuse_sync_client
from asyncheartbeat._errors import CancelReason, HeartbeatError, stalled_detail
from asyncheartbeat._log import fields
from asyncheartbeat._service import Answered, Cut, Final, Outcome, Transient
from asyncheartbeat.instrumentation import Event, EventKind, Hook

from ._calls import Calls, Watch
from ._host import Tasks, start_host
from ._lease import Lease, Stage
from ._pacing import paced_interval
from ._schedule import Schedule, Timer
from ._verdict import verdict

logger = logging.getLogger("asyncheartbeat")

#: Second attempts in flight at once for one lease: enough to get past a few dead
#: connections, few enough that a service slow for everyone is not sent many times its load.
MAX_HEDGES = 3

_reporters: weakref.WeakKeyDictionary[Any, Reporter] = weakref.WeakKeyDictionary()
_SUPERSEDED_BY_HEDGE = Transient("superseded by a second attempt", cut=Cut.SUPERSEDED)


@dataclasses.dataclass(frozen=True, slots=True)
class _Hedge:
    """A second attempt beside a report: the report's scope (a decisive answer ends it),
    the hedge's own while it waits for its turn, and when the attempt it went beside was
    sent."""

    report: anyio.CancelScope
    waiting: anyio.CancelScope
    beside_sent_at: float


class Reporter:
    """The reports of one client (an aiobotocore DataPipeline client, or anything with its
    coroutine methods): every heartbeat's schedule, attempts and verdict, in one place.

    Heartbeats and task runners given the same client share its reporter
    (`Reporter.of`); give them a `Reporter` instead to choose its hooks or its source of
    randomness. The rules it keeps (wait for slow answers, try beside hung ones, admit
    calls by measured capacity, slow the whole client when throttled) are explained in
    [Calls: one reporter per client](../timing-and-reasons.md#calls-one-reporter-per-client),
    and its pieces in [Architecture](../architecture.md).

    Args:
        client: An aiobotocore DataPipeline client (or anything with its coroutine methods).
            Not a `Reporter`: pass a reporter on as it is.
        hooks: Called with every `Event` of this client, after the global hooks of
            `asyncheartbeat.instrumentation.set_hooks`.
        random_source: Where backoff jitter comes from; seed one for repeatable tests. A new
            `random.Random` unless given.

    Raises:
        TypeError: ``client`` is a `Reporter`, a sync botocore or boto3 client, or a hook
            is not callable.

    Attributes:
        client: The client every call goes through.
        hooks: Hooks of this client, called with every `Event` after the global ones.
    """

    def __init__(
        self,
        client: Any,
        *,
        hooks: Iterable[Hook] = (),
        random_source: random.Random | None = None,
    ) -> None:
        if isinstance(client, Reporter):
            raise TypeError("client is a Reporter already: pass it on as it is")
        refuse_sync_client(client)
        refuse_foreign_backend(client)
        self.client = client
        self.hooks = tuple(hooks)
        for hook in self.hooks:
            if not callable(hook):
                raise TypeError(f"a hook must be callable, got {type(hook).__name__}")
        self.calls = Calls(DataPipeline(client), self.hooks, random_source or random.Random())
        self._service = self.calls.service
        self._schedule = Schedule()
        self._leases: dict[str, Lease] = {}
        self._serving = False
        self._host_done: anyio.Event | None = None

    @classmethod
    def of(cls, client: Any) -> Reporter:
        """The reporter of ``client``, made on first use and kept as long as the client lives.

        Args:
            client: A client, or a reporter (returned as it is).

        Returns:
            The client's one reporter, shared by every heartbeat and runner given that client.
        """
        if isinstance(client, Reporter):
            refuse_foreign_backend(client.client)
            return client
        try:
            reporter = _reporters.get(client)
        except TypeError:  # cannot be weakly referenced: a reporter of its own each time
            return cls(client)
        if reporter is None:
            reporter = _reporters[client] = cls(client)  # which checks the backend
        else:
            refuse_foreign_backend(client)
        return reporter

    def __repr__(self) -> str:
        admission = self.calls.admission
        return (
            f"<Reporter of {type(self.client).__name__}: {len(self._leases)} leases, "
            f"{admission.in_flight} calls in flight, limit {admission.capacity}, "
            f"{len(admission.queue)} waiting>"
        )

    def rate(self, operation: str) -> float | None:
        """The calls/s this client allows itself for ``operation`` since it was throttled.

        Args:
            operation: An operation name, such as ``"ReportTaskProgress"``.

        Returns:
            The rate, or None while the operation is not throttled.
        """
        rate = self.calls.rates.get(operation)
        return rate.rate if rate is not None else None

    def clock(self) -> float:
        """The clock every time of a lease is read on: anyio's, on the reporter's loop."""
        return current_time()

    def held(self) -> list[str]:
        """The task ids of the leases this reporter holds now."""
        return list(self._leases)

    async def close(self, error: HeartbeatError) -> list[str]:
        """Stop every lease still held, each body with ``error``, and end them (their last
        reports are not sent): what a `ReportingThread` does as it is left.

        Args:
            error: What each body's heartbeat raises as it ends.

        Returns:
            The task ids of the leases that were stopped.
        """
        held = list(self._leases.values())
        for lease in held:
            self._crashed(lease, error)
            await self.end(lease, report_last=False)
        return [lease.task_id for lease in held]

    # -- the seam: what a heartbeat asks of its reporter ----------------------------------

    async def start(self, lease: Lease) -> None:
        """Take ``lease`` on and acknowledge its task; return once the service answered
        (the body may start) or a verdict was reached (``lease.verdict``).

        `Heartbeat` calls this as it is entered; job code does not.

        Args:
            lease: The task's lease, as the heartbeat made it.

        Raises:
            HeartbeatError: ``lease.task_id`` has a lease on this client already, or a
                mistake no retry can mend (a closed client, a sync client's call).
        """
        if (other := self._leases.get(lease.task_id)) is not None and other is not lease:
            raise HeartbeatError(
                f"task {lease.task_id!r} has a heartbeat running on this client already: "
                f"one heartbeat per task"
            )
        self._leases[lease.task_id] = lease
        lease.stage = Stage.ACKNOWLEDGING
        self.calls.load.add(lease.timing.interval, lease.timing.lease_timeout)
        if not self._serving:
            self._serving = True
            self._host_done = anyio.Event()
            start_host(self._serve, self._host_done)
        try:
            # The schedule counts from when the acknowledgement went on the wire: heartbeats
            # entered together but acknowledged one after another keep their reports apart.
            limit = min(lease.timing.lease_timeout, self._service.acknowledge_within)
            outcome, anchor = await self._report(lease, None, current_time() + limit)
        except BaseException:
            await self._leave(lease)
            raise
        if (stop := verdict(outcome, lease, self._service.acknowledge_within)) is not None:
            self._conclude(lease, stop)
            self._cut_calls(lease)  # a second attempt still out would hold the exit back
            await self._leave(lease)
            return
        logger.debug(
            "task %r acknowledged", lease.task_id,
            extra=fields("acknowledged", task_id=lease.task_id),
        )  # fmt: skip
        lease.stage = Stage.RUNNING
        now = current_time()
        # Decided now: an acknowledgement slower than the interval skips the slots it
        # covered, while a body blocking the loop before the first report shows as lateness.
        self._schedule.set(
            lease,
            Timer.REPORT,
            self._next_report(lease, anchor, now),
        )
        if (stall_timeout := lease.timing.stall_timeout) is not None:
            # Counted from here: an acknowledgement slow to come is no stall of the body's.
            lease.last_progress = now
            self._schedule.set(lease, Timer.STALL, now + stall_timeout)
        self.calls.emit(Event(EventKind.ACKNOWLEDGED, self._service.renew_operation, lease.task_id))

    async def beat(self, lease: Lease) -> bool:
        """Ask for a report carrying the current fields, and wait for its answer
        (`Heartbeat.beat` calls this).

        Args:
            lease: The task's lease.

        Returns:
            Whether a report carrying the fields was answered; False if a verdict came or
            the heartbeat ended first.
        """
        in_flight = lease.in_flight
        if in_flight is not None and in_flight[1] == lease.fields[0]:
            wanted = in_flight[0]
        else:
            wanted = lease.attempts_started + 1
        lease.beat_wanted_by = max(lease.beat_wanted_by, wanted)
        if lease.report_timer:  # between reports: the next one goes now
            self._schedule.set(lease, Timer.BEAT, current_time())
        while (
            lease.last_answered_attempt < wanted
            and lease.stage is Stage.RUNNING
            and lease.verdict is None
        ):
            await lease.wait_for_change()
        return lease.last_answered_attempt >= wanted

    async def end(self, lease: Lease, *, report_last: bool) -> None:
        """Stop reporting for ``lease`` now (neither a timer nor a call in flight is waited
        for), send its last report if asked to, and let it go (`Heartbeat` calls this as it
        is left).

        Args:
            lease: The task's lease.
            report_last: Send one last report first, bounded by the call timeout.
        """
        if lease.stage in (Stage.CLOSING, Stage.CLOSED):
            return  # ended already (a ReportingThread that was left ends its leases)
        if lease.ran_out(current_time()):
            timeout = lease.timing.lease_timeout
            self._conclude(lease, Final(CancelReason.LEASE_LOST, f"no report succeeded for "
                           f"{timeout:g} s: the block ended after its lease ran out"))  # fmt: skip
            report_last = False
        lease.stage = Stage.CLOSING
        self._cut_calls(lease)
        try:
            if report_last:
                while lease.tasks:  # the cut calls give their places back first
                    await lease.wait_for_change()
                await self._final_report(lease)
        finally:
            await self._leave(lease)
            self.calls.emit(
                Event(EventKind.ENDED, self._service.renew_operation, lease.task_id,
                      reason=lease.cancel_reason)
            )  # fmt: skip

    def _cut_calls(self, lease: Lease) -> None:
        """Stop ``lease``'s timers and cut its calls: the report's and its second attempts."""
        self._schedule.clear(lease)
        for scope in (lease.report_scope, lease.waiting_hedge, *lease.hedge_scopes):
            if scope is not None:
                scope.cancel()

    async def _leave(self, lease: Lease) -> None:
        """Let ``lease`` go; the last one out waits for the host to end, so that nothing of
        the reporter is left running once every heartbeat has ended."""
        if self._leases.get(lease.task_id) is lease:
            del self._leases[lease.task_id]
            self.calls.load.add(lease.timing.interval, lease.timing.lease_timeout, -1)
        lease.stage = Stage.CLOSED
        lease.wake()
        if not self._leases and (done := self._host_done) is not None:
            self._schedule.wake()
            with anyio.CancelScope(shield=True):  # its tasks are cancelled: it ends at once
                await done.wait()

    # -- the schedule --------------------------------------------------------------------

    async def _serve(self) -> None:
        """Run the client's timers until it has no lease left."""
        try:
            async with anyio.create_task_group() as group:
                tasks = Tasks(group)
                while self._leases:
                    stalls: list[tuple[Lease, float]] = []
                    now = current_time()
                    for at, lease, timer in self._schedule.due(now):
                        if timer is Timer.STALL:
                            stalls.append((lease, lease.last_progress))
                        elif timer is Timer.HEDGE:
                            self._hedge_due(tasks, lease, now)
                        else:
                            self._report_due(tasks, lease, at, now, timer is Timer.REPORT)
                    if stalls:
                        # A busy loop wakes this late, perhaps with a body ready to run and
                        # about to progress: every task ready now takes its turn first.
                        await anyio.lowlevel.checkpoint()
                        self._check_stalls(stalls)
                        continue
                    await self._schedule.sleep()
                # Synchronously with the check above: a lease that joins from now on starts
                # another host, while this one lets its last tasks unwind.
                self._serving = False
                await tasks.drain()
        except BaseException as exc:
            self._serving = False
            for lease in list(self._leases.values()):
                self._crashed(lease, exc if isinstance(exc, Exception) else HeartbeatError(
                    "the reporter's task was cancelled"))  # fmt: skip
            if not isinstance(exc, Exception):
                raise

    def _spawn(self, tasks: Tasks, lease: Lease, work: Callable[..., Any], *args: Any) -> None:
        """Run ``work(lease, *args)``; `end` cuts it through the scopes the lease keeps."""
        lease.tasks += 1
        tasks.spawn(self._run_for, lease, work, args)

    async def _run_for(self, lease: Lease, work: Callable[..., Any], args: Any) -> None:
        try:
            await work(lease, *args)
        except Exception as exc:
            self._crashed(lease, exc)
        finally:
            lease.tasks -= 1
            if not lease.tasks:
                lease.wake()

    def _report_due(
        self, tasks: Tasks, lease: Lease, at: float, now: float, scheduled: bool
    ) -> None:
        if scheduled:
            lateness = now - at
            self.calls.admission.loop_lag(lateness, now)
            if lateness > lease.timing.lateness_threshold:
                self.calls.emit(
                    Event(
                        EventKind.LATE, self._service.renew_operation, lease.task_id,
                        delay=lateness, description=f"the lease is lost after "
                        f"{lease.timing.lease_timeout:g} s without a report",
                    )
                )  # fmt: skip
        self._spawn(tasks, lease, self._scheduled_report, at if scheduled else now, scheduled)

    async def _scheduled_report(self, lease: Lease, planned: float, scheduled: bool) -> None:
        if lease.stage is not Stage.RUNNING:  # ended before this task ran
            return
        outcome, anchor = await self._report(lease, planned, lease.lease_end)
        if lease.verdict is not None or lease.stage is not Stage.RUNNING:
            return  # a verdict came meanwhile, or the heartbeat ended and cut the report
        now = outcome.answered_at if isinstance(outcome, Answered) else current_time()
        if scheduled:
            # Late for its own spacing: a paced report is not late for waiting its turn.
            threshold = max(lease.timing.lateness_threshold, lease.report_period / 2)
            self.calls.overload.report_due(now, now - planned, threshold)
            self.calls.emit(
                Event(EventKind.SCHEDULED, self._service.renew_operation, lease.task_id,
                      delay=now - planned)
            )  # fmt: skip
        if (stop := verdict(outcome, lease, self._service.acknowledge_within)) is not None:
            self._conclude(lease, stop)
            return
        if lease.beat_wanted_by > lease.last_answered_attempt:
            self._schedule.set(lease, Timer.BEAT, now)
        else:
            # Decided now, not at the next slot: a loop blocked later shows as lateness.
            self._schedule.set(lease, Timer.REPORT, self._next_report(lease, anchor, now))

    def _next_report(self, lease: Lease, anchor: float, now: float) -> float:
        """When ``lease``'s next regular report is due: one interval on, or further apart
        while the client's reports are throttled (`paced_interval`)."""
        period = lease.report_period = paced_interval(lease.timing, self.calls.report_stretch())
        return lease.timing.next_due(
            anchor, now, lease.lease_end(), self._answer_takes(lease), period
        )

    def _answer_takes(self, lease: Lease) -> float:
        """How long the next report's answer may take: its lease's last round trip (a new
        client's first one included, which the client's latency leaves out), or the
        client's smoothed latency, whichever is longer."""
        return max(lease.round_trip, self.calls.latency.smoothed or 0.0)

    def _check_stalls(self, stalls: list[tuple[Lease, float]]) -> None:
        for lease, noted in stalls:
            stall_timeout = lease.timing.stall_timeout
            if lease.stage is not Stage.RUNNING or stall_timeout is None or lease.body_done:
                continue
            if lease.last_progress == noted and current_time() >= noted + stall_timeout:
                self._conclude(lease, Final(CancelReason.STALLED, stalled_detail(stall_timeout)))
            else:
                # Woken once per stall_timeout however often the body progresses.
                self._schedule.set(lease, Timer.STALL, lease.last_progress + stall_timeout)

    # -- reports --------------------------------------------------------------------------

    async def _report(
        self,
        lease: Lease,
        planned: float | None,
        deadline: float | Callable[[], float],
        hedge: _Hedge | None = None,
    ) -> tuple[Outcome, float]:
        """Report until the service answers, a failure is final, or ``deadline`` passes;
        return the outcome and the time the next regular report is counted from.

        That is ``planned`` (the slot of a scheduled report) when the first attempt is
        answered, and when the answered attempt was sent otherwise, so that a report never
        follows an answer too closely. A hedge is one attempt beside the report in flight
        (``hedge`` says which); a report a hedge decided first returns the hedge's outcome.
        """
        attempts: list[tuple[int, int]] = []  # (attempt number, fields version) sent
        attempt_scope: list[anyio.CancelScope] = []  # the latest attempt's
        calls, timing = self.calls, lease.timing

        def params() -> dict[str, Any]:
            return self._service.renewal(lease.task_id, lease.fields[1])

        def watch(scope: anyio.CancelScope | None, now: float) -> None:
            if scope is None:  # the attempt ended
                if hedge is not None:
                    lease.hedge_scopes.pop(attempt_scope[0], None)
                else:
                    lease.in_flight = lease.primary = None
                    lease.hedge_timer = 0
                return
            lease.attempts_started += 1
            sent = (lease.attempts_started, lease.fields[0])
            attempts.append(sent)
            attempt_scope[:] = [scope]
            if hedge is not None:
                lease.hedge_scopes[scope] = now
                if lease.waiting_hedge is hedge.waiting:
                    lease.waiting_hedge = None
                calls.emit(
                    Event(
                        EventKind.HEDGED, self._service.renew_operation, lease.task_id,
                        delay=now - hedge.beside_sent_at,
                    )
                )  # fmt: skip
                return
            lease.in_flight = sent
            lease.primary = (scope, now)
            if lease.stage is not Stage.CLOSING:  # the last report goes alone
                self._schedule.set(lease, Timer.HEDGE, now + calls.hedge_after(timing.call_timeout))

        hedged: Outcome | None = None
        if hedge is not None:
            assert not callable(deadline)
            outcome = await calls.attempt(
                self._service.renew_operation, params, deadline=deadline,
                task_id=lease.task_id, lease=lease, watch=watch,
            )  # fmt: skip
        else:
            outcome, hedged = await self._call_beside_hedges(lease, params, deadline, watch)
        if not isinstance(outcome, Answered):
            # A hedge decisive as the report failed for good, or that ended it, has the word.
            decided = hedged or outcome
            return decided, decided.sent_at if isinstance(decided, Answered) else math.nan
        attempt, version = attempts[-1]
        anchor = planned if planned is not None and len(attempts) == 1 else outcome.sent_at
        lease.beats += 1
        lease.round_trip = outcome.answered_at - outcome.sent_at
        lease.last_success = max(outcome.sent_at, lease.last_success or -math.inf)
        # Calls still out may count until the new lease end, if their answer would move it;
        # a hedge sent before this answered report cannot, and is let go.
        lease_end = lease.lease_end()
        if lease.primary is not None:
            lease.primary[0].deadline = max(lease.primary[0].deadline, lease_end)
        for scope, hedge_sent_at in lease.hedge_scopes.items():
            if hedge_sent_at <= lease.last_success:
                scope.cancel()
            else:
                scope.deadline = max(scope.deadline, lease_end)
        if attempt > lease.last_answered_attempt:
            lease.answered_version = version
            lease.last_answered_attempt = attempt
        lease.wake()
        # A stop a hedge heard in the same moment stands, whatever this answer says.
        if isinstance(hedged, Final) or (isinstance(hedged, Answered) and hedged.stop):
            return hedged, hedged.sent_at if isinstance(hedged, Answered) else anchor
        return outcome, anchor

    async def _call_beside_hedges(
        self,
        lease: Lease,
        params: Callable[[], dict[str, Any]],
        deadline: float | Callable[[], float],
        watch: Watch,
    ) -> tuple[Outcome, Outcome | None]:
        """The report's own attempts: the outcome, and what a hedge decided meanwhile (the
        outcome is a superseded `Transient` if that ended the report)."""
        # A hedge's decisive outcome ends the whole report, not just the attempt it went
        # beside: that attempt may have failed meanwhile, and the report be retrying.
        outcome: Outcome = _SUPERSEDED_BY_HEDGE
        timing = lease.timing
        with anyio.CancelScope() as lease.report_scope:
            outcome = await self.calls.call(
                self._service.renew_operation, params, deadline=deadline,
                task_id=lease.task_id, lease=lease, watch=watch,
                backoff_start=timing.backoff_start, backoff_cap=timing.interval,
            )  # fmt: skip
        lease.report_scope = None
        if lease.waiting_hedge is not None:  # it went beside this report: not needed now
            lease.waiting_hedge.cancel()
            lease.waiting_hedge = None
        hedged, lease.hedged = lease.hedged, None
        return outcome, hedged

    def _hedge_due(self, tasks: Tasks, lease: Lease, now: float) -> None:
        """Send another attempt beside a report unanswered for the hedge delay, and another
        after each further delay, up to `MAX_HEDGES` at once.

        The first attempt is not abandoned: it may still be answered, and cutting it would
        throw away what the service already received and the connection it came on. The
        first answer wins; a hedge answered first ends the report it stood beside.
        """
        if lease.primary is None or lease.stage is Stage.CLOSING:
            return
        # Not now (the client is busy, or not warm yet, or one is on its way): look again
        # after another delay.
        if (
            lease.waiting_hedge is None
            and len(lease.hedge_scopes) < MAX_HEDGES
            and self.calls.may_hedge()
        ):
            scope, sent_at = lease.primary
            assert lease.report_scope is not None  # an attempt in flight is a report's
            lease.waiting_hedge = anyio.CancelScope()
            hedge = _Hedge(lease.report_scope, lease.waiting_hedge, sent_at)
            # The report's deadline as it is now: answers since it was sent moved it on.
            self._spawn(tasks, lease, self._hedge, hedge, scope.deadline)
        delay = self.calls.hedge_after(lease.timing.call_timeout)
        self._schedule.set(lease, Timer.HEDGE, now + delay)

    async def _hedge(self, lease: Lease, hedge: _Hedge, deadline: float) -> None:
        with hedge.waiting:  # cancelled only while it waits for its turn
            # Its report may have ended before this task ran: with a place free, nothing
            # between here and the wire would notice.
            await anyio.lowlevel.checkpoint_if_cancelled()
            outcome, _ = await self._report(lease, None, deadline, hedge)
        if hedge.waiting.cancelled_caught:
            return
        decisive = isinstance(outcome, Answered | Final)
        if decisive and lease.report_scope is hedge.report:
            lease.hedged = outcome
            hedge.report.cancel()
            return
        # The service's latest word, after the report beside which this went was answered:
        # a task cancelled, gone, or its reports refused, whatever came before.
        stop = verdict(outcome, lease, self._service.acknowledge_within)
        if stop is not None and stop.reason is not CancelReason.LEASE_LOST:
            self._conclude(lease, stop, beside=True)

    async def _final_report(self, lease: Lease) -> None:
        """Send the fields that changed since the last answered report (or, after a stall,
        ask whether the task is still ours), bounded by call_timeout."""
        now = current_time()
        outcome, _ = await self._report(lease, now, now + lease.timing.call_timeout)
        if isinstance(outcome, Transient):
            self.calls.emit(
                Event(
                    EventKind.FAILED, self._service.renew_operation, lease.task_id,
                    error=outcome.error,
                    description=f"the last progress was not reported: {outcome.description}",
                )
            )  # fmt: skip
        elif (stop := verdict(outcome, lease, self._service.acknowledge_within)) is not None:
            # After a stall, the service's word replaces it: a task cancelled meanwhile is
            # not ours to fail.
            lease.verdict = None
            self._conclude(lease, stop)

    # -- verdicts ---------------------------------------------------------------------------

    def _conclude(self, lease: Lease, stop: Final, *, beside: bool = False) -> None:
        """Record the verdict and cancel the body with it; the first verdict stands. One
        reached beside the schedule (a second attempt's late answer) counts only while the
        body runs."""
        if lease.verdict is not None or (beside and lease.stage is not Stage.RUNNING):
            return
        lease.verdict = stop
        lease.report_timer = 0
        self.calls.emit(
            Event(
                EventKind.VERDICT, self._service.renew_operation, lease.task_id,
                reason=stop.reason, description=stop.description, error=stop.error,
            )
        )  # fmt: skip
        lease.stop_body(f"asyncheartbeat: {lease.stopped()}")
        lease.wake()

    def _crashed(self, lease: Lease, exc: BaseException) -> None:
        """A programming error, or a bug of ours, in the background: stop the work, and let
        the heartbeat raise it as it ends."""
        if not isinstance(exc, HeartbeatError):
            logger.error(
                "heartbeat of task %r failed", lease.task_id, exc_info=exc,
                extra=fields("heartbeat_crashed", task_id=lease.task_id),
            )  # fmt: skip
        if lease.crash is None:
            lease.crash = exc
        lease.stop_body(f"asyncheartbeat: heartbeat of {lease.task_id!r} failed")
        lease.wake()
