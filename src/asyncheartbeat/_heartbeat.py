"""The heartbeat: acknowledge the task, report on a fixed schedule, stop the work on a verdict."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar, TypeVarTuple

import anyio
import anyio.abc
import anyio.lowlevel

from ._call_layer import ACKNOWLEDGEMENT_LIMIT, CallLayer, Reply, Watch
from ._client import Answer, Failure, ProgressClient, report_answer_problem
from ._clock import current_time
from ._errors import CancelReason, HeartbeatError, TaskStopped, stalled_detail
from ._fields import FieldsInput, ProgressFields, check_task_id
from ._log import fields
from ._timing import Timing
from .instrumentation import Event, EventKind

logger = logging.getLogger("asyncheartbeat")

#: Hedges in flight at once for one heartbeat: enough to get past a few dead connections,
#: few enough that a service slow for everyone is not sent many times its load.
MAX_HEDGES = 3


@dataclasses.dataclass(frozen=True, slots=True)
class Hedge:
    """A second attempt beside a report: the report's scope (a decisive answer ends it),
    the hedge's own while it waits for its turn, and when the attempt it went beside was
    sent."""

    report: anyio.CancelScope
    waiting: anyio.CancelScope
    beside_sent_at: float


T = TypeVar("T")
PosArgs = TypeVarTuple("PosArgs")


class _State(enum.Enum):
    NEW = "new"
    ACKNOWLEDGING = "acknowledging"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class Heartbeat:
    """Keep a Data Pipeline task alive while the ``async with`` body runs.

    Entering acknowledges the task with a first ReportTaskProgress and returns once it
    succeeded. A background task then reports every ``interval`` seconds and cancels the
    body when the service answers ``canceled: true``, answers that the task or pipeline is
    gone, refuses the report, or when no report has succeeded for ``lease_timeout`` seconds;
    with a ``stall_timeout``, also when the body has shown no progress for that long.
    Leaving the block then raises `TaskStopped` (unless ``raise_on_cancel=False``).

    ```python
    async with Heartbeat(client, task_id, fields={"stage": "copy"}) as hb:
        async for n in copy_rows():
            hb.set_field("rowsCopied", str(n))
    ```

    The numbers must fit together: every one finite and above 0, ``lease_timeout >
    interval``, and ``lease_timeout > interval + call_timeout``. Why, and what each
    `CancelReason` asks of you: [Timing rules and cancel reasons](../timing-and-reasons.md).

    Args:
        client: An aiobotocore DataPipeline client (made with `client_config` for the
            right retries and timeouts), any object with an async ``report_task_progress``
            (see `ProgressClient`), or a `CallLayer`. Heartbeats given one client share
            its layer.
        task_id: The ``taskId`` PollForTask handed out, checked against the service's model
            (1 to 2,048 characters).
        interval: Seconds between reports, counted from the acknowledgement. The service
            asks for one a minute.
        fields: Progress fields for the first report: the API's shape (a list of
            ``{"key": ..., "stringValue": ...}`` or ``{"key": ..., "refValue": ...}``) or
            a plain ``{key: string}`` mapping.
        lease_timeout: Seconds without an answered report after which the task is taken to
            be reassigned and the body is stopped with `CancelReason.LEASE_LOST`. Set it to
            your pipeline's ``reportProgressTimeout`` if you set one.
        call_timeout: Seconds a report may go unanswered before a second attempt is sent
            beside it (the first is not abandoned). Default: ``min(interval,
            (lease_timeout - interval) / 2)``.
        raise_on_cancel: When False, a block the heartbeat stopped ends quietly and
            `cancel_reason` says why. A refused acknowledgement raises all the same: a
            context manager cannot skip its body.
        stall_timeout: Seconds the body may go without progress (`progress`, `set_field`,
            `set_ref`, `remove_field` or `beat`) before it is stopped with
            `CancelReason.STALLED`, counted from when the body starts; None (the default)
            never stops it for that. Unlike the other reasons, a stalled task is still
            yours: report it FAILED so that the service retries it.

    Raises:
        TypeError: ``client`` has no ``report_task_progress``, or is a sync client, or an
            option is not a number.
        ValueError: A number is out of range or they do not fit together, or ``task_id``
            or a field breaks the service's model.
        HeartbeatError: An aiobotocore client made on trio, where it cannot run (use
            `ThreadedClient`).

    Entering the block raises `TaskStopped` if the acknowledgement was refused or never
    landed (the body does not run), and `HeartbeatError` for a mistake no retry can mend
    (a closed client, a sync client's call).

    Attributes:
        task_id: The task this heartbeat keeps alive.
        cancel_reason: Why the heartbeat stopped the work, or None while it has not.
        beats: Reports the service answered, the acknowledgement included.
        last_success: The anyio clock time at which the last answered report was sent;
            the lease counts from it. None before the acknowledgement.
    """

    def __init__(
        self,
        client: ProgressClient | CallLayer,
        task_id: str,
        *,
        interval: float = 60.0,
        fields: FieldsInput | None = None,
        lease_timeout: float = 300.0,
        call_timeout: float | None = None,
        raise_on_cancel: bool = True,
        stall_timeout: float | None = None,
    ) -> None:
        raw_client = client.client if isinstance(client, CallLayer) else client
        if not callable(getattr(raw_client, "report_task_progress", None)):
            raise TypeError(
                f"client must have a report_task_progress coroutine method "
                f"(an aiobotocore 'datapipeline' client), got {type(raw_client).__name__}"
            )
        self._layer = CallLayer.of(client)
        self.task_id = check_task_id(task_id)
        self._timing = Timing.check(interval, lease_timeout, call_timeout, stall_timeout)
        self._fields = ProgressFields(fields)
        self._raise_on_cancel = raise_on_cancel
        self._state = _State.NEW

        #: Why the heartbeat stopped the work, or None while it has not.
        self.cancel_reason: CancelReason | None = None
        self._cancel_detail = ""
        self._cancel_cause: BaseException | None = None
        #: Reports the service answered, the acknowledgement included.
        self.beats = 0
        #: anyio clock time at which the last answered report was sent; the lease counts from it.
        self.last_success: float | None = None

        # Attempts are numbered so that beat() can tell which report will carry its request.
        self._attempts_started = 0
        self._last_answered_attempt = 0
        self._answered_version = -1
        self._in_flight: tuple[int, int] | None = None  # (attempt, fields version)
        # The report in flight that a hedge may stand beside (its attempt's cancel scope and
        # when it was sent), the whole report's scope (its attempts and the waits between
        # them), the hedges in flight, the one waiting for its turn, a hedge's answer that
        # came first, the timer.
        self._primary: tuple[anyio.CancelScope, float] | None = None
        self._report_scope: anyio.CancelScope | None = None
        self._hedge_scopes: dict[anyio.CancelScope, float] = {}  # → when it was sent
        self._waiting_hedge: anyio.CancelScope | None = None
        self._hedged: Answer | Failure | None = None
        self._hedge_timer = anyio.CancelScope()
        self._beat_wanted_by = 0  # the attempt number the most demanding beat() waits for
        self._sleep_scope: anyio.CancelScope | None = None  # the keep-alive task's, between reports
        self._progress: anyio.Event | None = None  # set when a report is answered or it all ends
        self._crash: BaseException | None = None
        # The stall watchdog's: whether the body runs under one, and when it last progressed.
        self._watching = False
        self._last_progress = 0.0

    def __repr__(self) -> str:
        return (
            f"<Heartbeat task_id={self.task_id!r} state={self._state.value} beats={self.beats}"
            f" cancel_reason={self.cancel_reason}>"
        )

    # -- progress fields --------------------------------------------------------------------

    def set_field(self, key: str, value: str) -> None:
        """Set a ``stringValue`` field; the next report carries it.
        Counts as progress.

        Args:
            key: The field's key (1 to 256 characters).
            value: Its value (up to 10,240 characters).

        Raises:
            ValueError: The key or value breaks the service's model, or the fields together
                would pass the service's limits (50 fields, 15,360 UTF-8 bytes).
            HeartbeatError: The heartbeat has ended: nothing would report the field.
        """
        self._check_not_ended()
        self._fields.set(key, "stringValue", value)
        self.progress()

    def set_ref(self, key: str, object_id: str) -> None:
        """Set a ``refValue`` field (another pipeline object's id); the next report carries it.
        Counts as progress.

        Args:
            key: The field's key (1 to 256 characters).
            object_id: The id of the pipeline object it refers to (1 to 256 characters).

        Raises:
            ValueError: As for `set_field`.
            HeartbeatError: The heartbeat has ended.
        """
        self._check_not_ended()
        self._fields.set(key, "refValue", object_id)
        self.progress()

    def remove_field(self, key: str) -> None:
        """Stop sending ``key``. The service keeps the value it already has.
        Counts as progress.

        Args:
            key: The field's key; a key not set is ignored.

        Raises:
            HeartbeatError: The heartbeat has ended.
        """
        self._check_not_ended()
        self._fields.remove(key)
        self.progress()

    def progress(self) -> None:
        """Tell the stall watchdog that the work advances, without a field to set.

        Nothing is sent: this only notes the time (anyio's clock), so it may be called
        once per turn of a loop. Without a ``stall_timeout``, and outside the body, it does
        nothing. Call it from the event loop's thread; from a worker thread, through
        ``anyio.from_thread.run_sync(hb.progress)``.

        Raises:
            HeartbeatError: Called from another thread while a watchdog runs.
        """
        if self._watching:
            try:
                self._last_progress = current_time()
            except RuntimeError as exc:  # anyio's NoEventLoopError: not the loop's thread
                raise HeartbeatError(
                    "progress() needs the event loop's thread: from a worker thread, call "
                    "anyio.from_thread.run_sync(hb.progress)"
                ) from exc

    @property
    def fields(self) -> list[dict[str, str]]:
        """The fields the next report will carry, in the API's shape (a copy)."""
        return [dict(field) for field in self._fields.wire()]

    def _check_not_ended(self) -> None:
        if self._state in (_State.CLOSING, _State.CLOSED):
            raise HeartbeatError(
                f"the heartbeat of task {self.task_id!r} has ended: a field set now would never "
                f"be reported"
            )

    # -- entering and leaving -----------------------------------------------------------------

    async def __aenter__(self) -> Heartbeat:
        if self._state is not _State.NEW:
            raise RuntimeError("a Heartbeat can be entered only once: create one per task run")
        self._state = _State.ACKNOWLEDGING
        self._layer.join(self._timing.interval, self._timing.lease_timeout)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            # The second-attempt watcher runs from the start: a slow acknowledgement on a warm
            # client deserves a hedge as much as any report.
            task_group.start_soon(
                self._hedge_slow_reports, task_group, name=f"asyncheartbeat:{self.task_id}"
            )
            first_due = await self._acknowledge()
        except BaseException:
            self._state = _State.CLOSED
            self._layer.leave(self._timing.interval, self._timing.lease_timeout)
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
            raise
        # The body runs in this scope, which the keep-alive task cancels on a verdict.
        # Both are entered here and left in __aexit__, by the task running the block.
        self._body_scope = anyio.CancelScope().__enter__()
        task_group.start_soon(self._keep_alive, first_due, name=f"asyncheartbeat:{self.task_id}")
        if self._timing.stall_timeout is not None:
            # Counted from here: an acknowledgement slow to come is no stall of the body's.
            self._last_progress = current_time()
            self._watching = True
            task_group.start_soon(
                self._watch_for_stall, self._timing.stall_timeout,
                name=f"asyncheartbeat:{self.task_id}:stall",
            )  # fmt: skip
        self._task_group = task_group
        self._state = _State.RUNNING
        # Last, so that nothing between it and __aexit__ (which sends ENDED) can fail.
        self._layer.emit(Event(EventKind.ACKNOWLEDGED, "ReportTaskProgress", self.task_id))
        return self

    def _acknowledgement_limit(self) -> float:
        # The service reassigns a task not acknowledged within 2 minutes, whatever the lease.
        return min(self._timing.lease_timeout, ACKNOWLEDGEMENT_LIMIT)

    async def _acknowledge(self) -> float:
        """Send the first report; return when the next one is due, or raise."""
        # The schedule counts from when the acknowledgement went on the wire: heartbeats
        # entered together but acknowledged one after another keep their reports spread out.
        limit = self._acknowledgement_limit()
        result = await self._report(planned=None, deadline=current_time() + limit)
        if (verdict := self._verdict(result)) is not None:
            # A context manager cannot skip its body: this raises whatever raise_on_cancel says.
            self._record_cancel(*verdict)
            raise self._task_cancelled() from self._cancel_cause
        assert isinstance(result, Answer)
        logger.debug(
            "task %r acknowledged", self.task_id,
            extra=fields("acknowledged", task_id=self.task_id),
        )  # fmt: skip
        # Decided now: an acknowledgement slower than the interval skips the slots it covered,
        # while a body blocking the loop before the first report must show as lateness.
        return self._timing.next_due(result.anchor, current_time(), self._lease_end())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        body_cancelled_by_us = self._body_scope.__exit__(exc_type, exc, traceback)
        self._state = _State.CLOSING
        self._watching = False
        self._wake_waiters()
        try:
            # Stop reporting now: neither a pending sleep nor an in-flight call is waited for.
            # The body's exception is kept out of the task group so it never gets wrapped.
            self._task_group.cancel_scope.cancel()
            await self._task_group.__aexit__(None, None, None)

            # Cancellation, KeyboardInterrupt and SystemExit are not waited on for a report;
            # our own cancellation of a stalled body is: that task is still ours.
            ended_by_itself_or_us = (
                exc is None or isinstance(exc, Exception) or body_cancelled_by_us
            )
            # A stalled task is reported at once, fields changed or not: it is still ours
            # only if the service has not cancelled it meanwhile, which only a report
            # answered after the body's cleanup can tell (the runner then reports nothing).
            stalled = self.cancel_reason is CancelReason.STALLED
            fields_changed = self._fields.version != self._answered_version
            if (
                ended_by_itself_or_us
                and (self.cancel_reason is None or stalled)
                and self._crash is None
                and (fields_changed or stalled)
            ):
                await self._final_report()
        finally:
            self._state = _State.CLOSED
            self._layer.leave(self._timing.interval, self._timing.lease_timeout)
            self._wake_waiters()
            self._layer.emit(
                Event(EventKind.ENDED, "ReportTaskProgress", self.task_id,
                      reason=self.cancel_reason)
            )  # fmt: skip

        if self._crash is not None:
            if isinstance(self._crash, HeartbeatError):
                raise self._crash
            raise HeartbeatError(f"the heartbeat of task {self.task_id!r} failed") from self._crash
        if exc is not None and not body_cancelled_by_us:
            return False  # the body's own exception, or cancellation from outside: unchanged
        if self.cancel_reason is not None and self._raise_on_cancel:
            raise self._task_cancelled() from self._cancel_cause
        return body_cancelled_by_us

    # -- reporting ----------------------------------------------------------------------------

    async def beat(self) -> None:
        """Report now and return once a report carrying the current fields was answered.

        A beat asked for while a report with the same fields is in flight waits for that one;
        otherwise it is carried by the next report, which starts at once unless a failed
        report is backing off. The regular schedule then counts from it.

        Raises:
            TaskStopped: The heartbeat stopped the work meanwhile (called from the body, the
                body's own cancellation comes first).
            HeartbeatError: The heartbeat is not running, or ended before the report.
        """
        if self._state is not _State.RUNNING:
            raise HeartbeatError(
                f"beat() needs the heartbeat of task {self.task_id!r} running; it is "
                f"{self._state.value}"
            )
        self.progress()
        in_flight = self._in_flight
        if in_flight is not None and in_flight[1] == self._fields.version:
            wanted = in_flight[0]
        else:
            wanted = self._attempts_started + 1
        self._beat_wanted_by = max(self._beat_wanted_by, wanted)
        if self._sleep_scope is not None:
            self._sleep_scope.cancel()
        while (
            self._last_answered_attempt < wanted
            and self._state is _State.RUNNING
            and self.cancel_reason is None
        ):
            if self._progress is None:
                self._progress = anyio.Event()
            await self._progress.wait()
        if self.cancel_reason is not None:
            # Called from the body, the body's own cancellation is delivered right here;
            # called from elsewhere, the caller learns of it from TaskStopped.
            await anyio.lowlevel.checkpoint()
            raise self._task_cancelled() from self._cancel_cause
        if self._last_answered_attempt < wanted:
            raise HeartbeatError(f"the heartbeat of task {self.task_id!r} ended before beat()")

    async def _keep_alive(self, due: float) -> None:
        timing = self._timing
        try:
            while True:
                planned, woke_at = await self._sleep_until_due(due)
                if self.cancel_reason is not None:  # a late verdict came meanwhile
                    return
                if planned == due:
                    self._note_lateness(due, woke_at)
                result = await self._report(planned, self._lease_end)
                if self.cancel_reason is not None:
                    return
                now = result.answered_at if isinstance(result, Answer) else current_time()
                if planned == due:
                    self._layer.report_due(now, now - due, timing.lateness_threshold)
                    self._layer.emit(
                        Event(EventKind.SCHEDULED, "ReportTaskProgress", self.task_id,
                              delay=now - due)
                    )  # fmt: skip
                if (verdict := self._verdict(result)) is not None:
                    self._stop_work(*verdict)
                    return
                assert isinstance(result, Answer)
                # Decided now, not after the sleep: a loop blocked later must show as lateness.
                due = timing.next_due(result.anchor, now, self._lease_end())
        except Exception as exc:
            self._crashed(exc)

    def _crashed(self, exc: Exception) -> None:
        """A programming error, or a bug of ours, in the background: stop the work, and let
        `__aexit__` raise it (never out of the task group, which would wrap it)."""
        if not isinstance(exc, HeartbeatError):
            logger.exception(
                "heartbeat of task %r failed", self.task_id,
                extra=fields("heartbeat_crashed", task_id=self.task_id),
            )  # fmt: skip
        if self._crash is None:
            self._crash = exc
        self._body_scope.cancel(reason=f"asyncheartbeat: heartbeat of {self.task_id!r} failed")

    async def _sleep_until_due(self, due: float) -> tuple[float, float]:
        """Sleep until ``due``; return the slot the report is for (``due``, or the time it
        woke if a beat() wants a report now) and the time it woke."""
        if self._beat_wanted_by <= self._last_answered_attempt:
            # A plain timer; beat() cancels this scope to wake the loop early. A deadline on
            # the scope would wake it by cancellation, costing an exception every report.
            with anyio.CancelScope() as scope:
                self._sleep_scope = scope
                await anyio.sleep(max(0.0, due - current_time()))
            self._sleep_scope = None
            if not scope.cancel_called:
                return due, current_time()
        now = current_time()
        return now, now

    def _note_lateness(self, due: float, woke_at: float) -> None:
        lateness = woke_at - due
        self._layer.woke_late(lateness, woke_at)
        if lateness > self._timing.lateness_threshold:
            self._layer.emit(
                Event(
                    EventKind.LATE, "ReportTaskProgress", self.task_id, delay=lateness,
                    description=f"the lease is lost after {self._timing.lease_timeout:g} s "
                    f"without a report",
                )
            )  # fmt: skip

    async def _report(
        self,
        planned: float | None,
        deadline: float | Callable[[], float],
        *,
        hedge: Hedge | None = None,
    ) -> Answer | Failure:
        """Report until the service answers, a failure is final, or ``deadline`` passes.

        The layer retries transient failures and waits out throttling. The next regular
        report is counted from ``planned`` (the slot of a scheduled report) when the first
        attempt is answered, and from when the answered attempt was sent otherwise, so that
        it never follows an answer too closely. A hedge is one attempt beside the report in
        flight (``hedge`` says which); a report a hedge answered first returns the hedge's
        answer.
        """
        attempts: list[tuple[int, int]] = []  # (attempt number, fields version) sent
        attempts_scope: list[anyio.CancelScope] = []  # the latest attempt's

        def watch(scope: anyio.CancelScope | None, now: float) -> None:
            if scope is None:  # the attempt ended
                if hedge is not None:
                    self._hedge_scopes.pop(attempts_scope[0], None)
                else:
                    self._in_flight = self._primary = None
                    self._hedge_timer.deadline = math.inf
                return
            self._attempts_started += 1
            sent = (self._attempts_started, self._fields.version)
            attempts.append(sent)
            attempts_scope[:] = [scope]
            if hedge is not None:
                self._hedge_scopes[scope] = now
                if self._waiting_hedge is hedge.waiting:
                    self._waiting_hedge = None
                self._layer.emit(
                    Event(
                        EventKind.HEDGED, "ReportTaskProgress", self.task_id,
                        delay=now - hedge.beside_sent_at,
                    )
                )  # fmt: skip
            else:
                self._in_flight = sent
                self._primary = (scope, now)
                self._hedge_timer.deadline = now + self._layer.hedge_after(
                    self._timing.call_timeout
                )

        hedged: Answer | Failure | None = None
        if hedge is not None:
            assert not callable(deadline)
            reply = await self._layer.attempt(
                "ReportTaskProgress", self._report_params, deadline=deadline,
                task_id=self.task_id, watch=watch, check=report_answer_problem,
            )  # fmt: skip
        else:
            reply, hedged = await self._call_beside_hedges(deadline, watch)
        if isinstance(reply, Failure):
            # A hedge decisive as the report failed for good, or that ended it, has the word.
            return hedged or reply
        attempt, version = attempts[-1]
        anchor = planned if planned is not None and len(attempts) == 1 else reply.sent_at
        self.beats += 1
        self.last_success = max(reply.sent_at, self.last_success or -math.inf)
        # Calls still out may count until the new lease end, if their answer would move it;
        # a hedge sent before this answered report cannot, and is let go.
        if self._primary is not None:
            self._primary[0].deadline = max(self._primary[0].deadline, self._lease_end())
        for scope, hedge_sent_at in self._hedge_scopes.items():
            if hedge_sent_at <= self.last_success:
                scope.cancel()
            else:
                scope.deadline = max(scope.deadline, self._lease_end())
        if attempt > self._last_answered_attempt:
            self._answered_version = version
            self._last_answered_attempt = attempt
        self._wake_waiters()
        # A stop a hedge heard in the same moment stands, whatever this answer says.
        if hedged is not None and (isinstance(hedged, Failure) or hedged.canceled):
            return hedged
        return Answer(reply.sent_at, reply.response["canceled"], anchor, reply.answered_at)

    async def _call_beside_hedges(
        self, deadline: float | Callable[[], float], watch: Watch
    ) -> tuple[Reply | Failure, Answer | Failure | None]:
        """The report's own attempts: the layer's reply, and what a hedge decided meanwhile
        (the reply is a superseded `Failure` if that ended the report)."""
        # A hedge's decisive outcome ends the whole report, not just the attempt it went
        # beside: that attempt may have failed meanwhile, and the report be retrying.
        reply: Reply | Failure = Failure("superseded by a hedge", superseded=True)
        with anyio.CancelScope() as self._report_scope:
            reply = await self._layer.call(
                "ReportTaskProgress", self._report_params, deadline=deadline,
                task_id=self.task_id, watch=watch, check=report_answer_problem,
                backoff_start=self._timing.backoff_start, backoff_cap=self._timing.interval,
            )  # fmt: skip
        self._report_scope = None
        if self._waiting_hedge is not None:  # it went beside this report: not needed now
            self._waiting_hedge.cancel()
            self._waiting_hedge = None
        hedged, self._hedged = self._hedged, None
        return reply, hedged

    def _lease_end(self) -> float:
        """When the lease bought by the last answered report runs out."""
        assert self.last_success is not None
        return self.last_success + self._timing.lease_timeout

    def _report_params(self) -> dict[str, Any]:
        return {"taskId": self.task_id, "fields": self._fields.wire()}

    async def _hedge_slow_reports(self, task_group: anyio.abc.TaskGroup) -> None:
        """Send another attempt beside a report unanswered for the hedge delay, and another
        after each further delay, up to `MAX_HEDGES` at once.

        The first attempt is not abandoned: it may still be answered, and cutting it would
        throw away what the service already received and the connection it came on. The
        first answer wins; a hedge answered first ends the report it stood beside.
        """
        while True:
            with self._hedge_timer:
                await anyio.sleep_forever()
            self._hedge_timer = anyio.CancelScope()
            if self._primary is None:
                continue
            # Not now (the client is busy, or not warm yet, or one is on its way): look again
            # after another delay.
            if (
                self._waiting_hedge is None
                and len(self._hedge_scopes) < MAX_HEDGES
                and self._layer.may_hedge()
            ):
                scope, sent_at = self._primary
                assert self._report_scope is not None  # an attempt in flight is a report's
                self._waiting_hedge = anyio.CancelScope()
                hedge = Hedge(self._report_scope, self._waiting_hedge, sent_at)
                # The report's deadline as it is now: answers since it was sent moved it on.
                task_group.start_soon(self._hedge, hedge, scope.deadline)
            delay = self._layer.hedge_after(self._timing.call_timeout)
            self._hedge_timer.deadline = current_time() + delay

    async def _hedge(self, hedge: Hedge, deadline: float) -> None:
        with hedge.waiting:  # cancelled only while it waits for its turn
            # Its report may have ended before this task ran: with a place free, nothing
            # between here and the wire would notice.
            await anyio.lowlevel.checkpoint_if_cancelled()
            try:
                result = await self._report(None, deadline, hedge=hedge)
            except Exception as exc:
                self._crashed(exc)
                return
        if hedge.waiting.cancelled_caught:
            return
        decisive = isinstance(result, Answer) or result.reason is not None
        if decisive and self._report_scope is hedge.report:
            self._hedged = result
            hedge.report.cancel()
        else:
            # The service's latest word, after the report beside which this went was
            # answered: a task cancelled, gone, or its reports refused, whatever came before.
            verdict = self._verdict(result)
            if verdict is not None and verdict[0] is not CancelReason.LEASE_LOST:
                self._stop_beside_keep_alive(*verdict)

    async def _watch_for_stall(self, stall_timeout: float) -> None:
        """Stop the work once the body has shown no progress for ``stall_timeout``.

        The body's progress only notes the time; this sleeps until that time plus
        ``stall_timeout``, and again from a later progress noted meanwhile, so that it
        wakes about once per ``stall_timeout`` however often the body progresses.
        """
        try:
            # Re-armed, not woken: an Event set by every progress() would cost each call more.
            while True:
                noted = self._last_progress
                if current_time() < noted + stall_timeout:
                    await anyio.sleep_until(noted + stall_timeout)
                    continue
                # A busy loop wakes this late, perhaps with the body ready to run and about
                # to progress: every task ready now takes its turn before the verdict.
                await anyio.lowlevel.checkpoint()
                if self._last_progress == noted:
                    break
            self._stop_beside_keep_alive(CancelReason.STALLED, stalled_detail(stall_timeout), None)
        except Exception as exc:
            self._crashed(exc)

    def _stop_beside_keep_alive(
        self, reason: CancelReason, detail: str, cause: BaseException | None
    ) -> None:
        """A verdict reached outside the keep-alive loop (a second attempt's late answer,
        the stall watchdog): the first verdict stands, and the keep-alive task ends."""
        if self.cancel_reason is not None or self._state is not _State.RUNNING:
            return
        self._stop_work(reason, detail, cause)
        if self._sleep_scope is not None:  # the keep-alive task sees the verdict, and ends
            self._sleep_scope.cancel()

    async def _final_report(self) -> None:
        """Send the fields that changed since the last answered report (or, after a stall,
        ask whether the task is still ours), bounded by call_timeout."""
        now = current_time()
        result = await self._report(planned=now, deadline=now + self._timing.call_timeout)
        if isinstance(result, Failure) and result.reason is None:
            self._layer.emit(
                Event(
                    EventKind.FAILED, "ReportTaskProgress", self.task_id, error=result.error,
                    description=f"the last progress was not reported: {result.description}",
                )
            )  # fmt: skip
        elif (verdict := self._verdict(result)) is not None:
            self._record_cancel(*verdict)

    # -- verdicts ------------------------------------------------------------------------------

    def _verdict(
        self, result: Answer | Failure
    ) -> tuple[CancelReason, str, BaseException | None] | None:
        """What a report's outcome means for the work; None means carry on."""
        if isinstance(result, Answer):
            if result.canceled:
                return CancelReason.REQUESTED, "the service answered canceled: true", None
            return None
        if result.reason is not None:
            return result.reason, result.description, result.error
        if self._state is _State.ACKNOWLEDGING:
            lost = f"the task was not acknowledged within {self._acknowledgement_limit():g} s"
        else:
            lost = f"no report succeeded for {self._timing.lease_timeout:g} s"
        return CancelReason.LEASE_LOST, f"{lost}; last failure: {result.description}", result.error

    def _stop_work(self, reason: CancelReason, detail: str, cause: BaseException | None) -> None:
        """Record the verdict and cancel the body with it."""
        self._record_cancel(reason, detail, cause)
        self._body_scope.cancel(reason=f"asyncheartbeat: {self._task_cancelled()}")

    def _record_cancel(
        self, reason: CancelReason, detail: str, cause: BaseException | None
    ) -> None:
        self.cancel_reason = reason
        self._cancel_detail = detail
        self._cancel_cause = cause
        self._layer.emit(
            Event(
                EventKind.VERDICT, "ReportTaskProgress", self.task_id, reason=reason,
                description=detail, error=cause,
            )
        )  # fmt: skip
        self._wake_waiters()

    def _task_cancelled(self) -> TaskStopped:
        assert self.cancel_reason is not None
        return TaskStopped(self.task_id, self.cancel_reason, self._cancel_detail)

    def _wake_waiters(self) -> None:
        if self._progress is not None:
            self._progress.set()
            self._progress = None


async def run_with_heartbeat(
    client: ProgressClient,
    task_id: str,
    fn: Callable[[*PosArgs], Awaitable[T]],
    *args: *PosArgs,
    interval: float = 60.0,
    fields: FieldsInput | None = None,
    lease_timeout: float = 300.0,
    call_timeout: float | None = None,
    stall_timeout: float | None = None,
) -> T:
    """Await ``fn(*args)`` under a `Heartbeat` and return its result.

    ```python
    rows = await run_with_heartbeat(client, task_id, copy_table, "orders", interval=30)
    ```

    ``fn`` has no heartbeat to report progress on, so a ``stall_timeout`` stops it that
    long after it started unless it returns first: a limit on its run time.

    Args:
        client: As for `Heartbeat`.
        task_id: As for `Heartbeat`.
        fn: The async function to run.
        *args: Its positional arguments.
        interval: As for `Heartbeat`.
        fields: As for `Heartbeat`.
        lease_timeout: As for `Heartbeat`.
        call_timeout: As for `Heartbeat`.
        stall_timeout: As for `Heartbeat`.

    Returns:
        What ``fn(*args)`` returned.

    Raises:
        TaskStopped: The heartbeat stopped it: there is no result to return then.
        TypeError: ``fn(*args)`` returned something that cannot be awaited (``fn`` is not
            an ``async def``), found before any report is sent.
    """
    heartbeat = Heartbeat(
        client,
        task_id,
        interval=interval,
        fields=fields,
        lease_timeout=lease_timeout,
        call_timeout=call_timeout,
        stall_timeout=stall_timeout,
    )
    return await run_under(heartbeat, "fn", fn, *args)


class NotAsyncError(TypeError):
    """A function that must be async returned something that cannot be awaited."""


async def run_under(
    heartbeat: Heartbeat, what: str, fn: Callable[[*PosArgs], Awaitable[T]], *args: *PosArgs
) -> T:
    """Await ``fn(*args)`` under ``heartbeat``. ``fn`` is called first, so that a sync one
    (``what`` names it in the error) is refused before the task is acknowledged."""
    running = fn(*args)
    if not inspect.isawaitable(running):
        name = getattr(fn, "__qualname__", type(fn).__name__)
        raise NotAsyncError(
            f"{what} must be an async function: {name}(...) returned "
            f"{type(running).__name__}, not an awaitable"
        )
    try:
        async with heartbeat:
            return await running
    finally:
        if inspect.iscoroutine(running):
            running.close()  # unawaited if the acknowledgement failed; else a no-op
    raise AssertionError("unreachable: a cancelled heartbeat raises TaskStopped")
