"""The heartbeat: acknowledge the task, report on a fixed schedule, stop the work on a verdict."""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar, TypeVarTuple

import anyio
import anyio.lowlevel

from ._client import Answer, Failure, ProgressClient, read_answer, read_failure
from ._errors import CancelReason, HeartbeatError, TaskCancelled
from ._fields import FieldsInput, ProgressFields, check_task_id
from ._load import join, leave
from ._timing import Timing

logger = logging.getLogger("asyncheartbeat")

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
    gone, refuses the report, or when no report has succeeded for ``lease_timeout`` seconds.
    Leaving the block then raises `TaskCancelled` (unless ``raise_on_cancel=False``).
    """

    def __init__(
        self,
        client: ProgressClient,
        task_id: str,
        *,
        interval: float = 60.0,
        fields: FieldsInput | None = None,
        lease_timeout: float = 300.0,
        call_timeout: float | None = None,
        raise_on_cancel: bool = True,
    ) -> None:
        if not callable(getattr(client, "report_task_progress", None)):
            raise TypeError(
                f"client must have a report_task_progress coroutine method "
                f"(an aiobotocore 'datapipeline' client), got {type(client).__name__}"
            )
        self._client = client
        self.task_id = check_task_id(task_id)
        self._timing = Timing.check(interval, lease_timeout, call_timeout)
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
        self._beat_wanted_by = 0  # the attempt number the most demanding beat() waits for
        self._sleep_scope: anyio.CancelScope | None = None  # the keep-alive task's, between reports
        self._progress: anyio.Event | None = None  # set when a report is answered or it all ends
        self._crash: BaseException | None = None

    def __repr__(self) -> str:
        return (
            f"<Heartbeat task_id={self.task_id!r} state={self._state.value} beats={self.beats}"
            f" cancel_reason={self.cancel_reason}>"
        )

    # -- progress fields --------------------------------------------------------------------

    def set_field(self, key: str, value: str) -> None:
        """Set a ``stringValue`` field; the next report carries it."""
        self._check_not_ended()
        self._fields.set(key, "stringValue", value)

    def set_ref(self, key: str, object_id: str) -> None:
        """Set a ``refValue`` field (another pipeline object's id); the next report carries it."""
        self._check_not_ended()
        self._fields.set(key, "refValue", object_id)

    def remove_field(self, key: str) -> None:
        """Stop sending ``key``. The service keeps the value it already has."""
        self._check_not_ended()
        self._fields.remove(key)

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
        self._load = join(self._client, self._timing.interval)
        try:
            first_due = await self._acknowledge()
            task_group = anyio.create_task_group()
            await task_group.__aenter__()
            # The body runs in this scope, which the keep-alive task cancels on a verdict.
            # Both are entered here and left in __aexit__, by the task running the block.
            self._body_scope = anyio.CancelScope().__enter__()
            task_group.start_soon(
                self._keep_alive, first_due, name=f"asyncheartbeat:{self.task_id}"
            )
            self._task_group = task_group
        except BaseException:
            self._state = _State.CLOSED
            leave(self._client, self._timing.interval)
            raise
        self._state = _State.RUNNING
        return self

    async def _acknowledge(self) -> float:
        """Send the first report; return when the next one is due, or raise."""
        # The schedule counts from when the acknowledgement went on the wire: heartbeats
        # entered together but acknowledged one after another keep their reports spread out.
        deadline = anyio.current_time() + self._timing.lease_timeout
        result = await self._report(planned=None, deadline=deadline)
        if (verdict := self._verdict(result)) is not None:
            # A context manager cannot skip its body: this raises whatever raise_on_cancel says.
            self._record_cancel(*verdict)
            raise self._task_cancelled() from self._cancel_cause
        assert isinstance(result, Answer)
        logger.debug("task %r acknowledged", self.task_id)
        # Decided now: an acknowledgement slower than the interval skips the slots it covered,
        # while a body blocking the loop before the first report must show as lateness.
        return self._timing.next_due(result.anchor, anyio.current_time())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        body_cancelled_by_us = self._body_scope.__exit__(exc_type, exc, traceback)
        self._state = _State.CLOSING
        self._wake_waiters()
        try:
            # Stop reporting now: neither a pending sleep nor an in-flight call is waited for.
            # The body's exception is kept out of the task group so it never gets wrapped.
            self._task_group.cancel_scope.cancel()
            await self._task_group.__aexit__(None, None, None)

            # Cancellation, KeyboardInterrupt and SystemExit are not waited on for a report.
            body_ended_by_itself = exc is None or isinstance(exc, Exception)
            if (
                body_ended_by_itself
                and self.cancel_reason is None
                and self._crash is None
                and self._fields.version != self._answered_version
            ):
                await self._final_report()
        finally:
            self._state = _State.CLOSED
            leave(self._client, self._timing.interval)
            self._wake_waiters()

        if self._crash is not None:
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
        report is backing off. Never two reports are in flight for one task.
        """
        if self._state is not _State.RUNNING:
            raise HeartbeatError(
                f"beat() needs the heartbeat of task {self.task_id!r} running; it is "
                f"{self._state.value}"
            )
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
            # called from elsewhere, the caller learns of it from TaskCancelled.
            await anyio.lowlevel.checkpoint()
            raise self._task_cancelled() from self._cancel_cause
        if self._last_answered_attempt < wanted:
            raise HeartbeatError(f"the heartbeat of task {self.task_id!r} ended before beat()")

    async def _keep_alive(self, due: float) -> None:
        timing = self._timing
        try:
            while True:
                planned = await self._sleep_until_due(due)
                if planned == due:
                    self._warn_if_late(due)
                assert self.last_success is not None
                result = await self._report(planned, self.last_success + timing.lease_timeout)
                now = anyio.current_time()
                if planned == due:
                    self._load.report_due(now, now - due, timing.lateness_threshold)
                if (verdict := self._verdict(result)) is not None:
                    self._record_cancel(*verdict)
                    self._body_scope.cancel(reason=f"asyncheartbeat: {self._task_cancelled()}")
                    return
                assert isinstance(result, Answer)
                # Decided now, not after the sleep: a loop blocked later must show as lateness.
                due = timing.next_due(result.anchor, now)
        except Exception as exc:  # a bug of ours: stop the work rather than run unguarded
            logger.exception("heartbeat of task %r failed", self.task_id)
            self._crash = exc
            self._body_scope.cancel(reason=f"asyncheartbeat: heartbeat of {self.task_id!r} failed")

    async def _sleep_until_due(self, due: float) -> float:
        """Sleep until ``due``; return it, or the current time if a beat() wants a report now."""
        if self._beat_wanted_by <= self._last_answered_attempt:
            # A plain timer; beat() cancels this scope to wake the loop early. A deadline on
            # the scope would wake it by cancellation, costing an exception every report.
            with anyio.CancelScope() as scope:
                self._sleep_scope = scope
                await anyio.sleep(max(0.0, due - anyio.current_time()))
            self._sleep_scope = None
            if not scope.cancel_called:
                return due
        return anyio.current_time()

    def _warn_if_late(self, due: float) -> None:
        now = anyio.current_time()
        if now - due > self._timing.lateness_threshold:
            self._load.warn(
                now,
                "report for task %r is %.2f s late: the event loop was blocked (blocking code "
                "in an async task?) or is overloaded; the lease is lost after %g s without a "
                "report",
                self.task_id,
                now - due,
                self._timing.lease_timeout,
            )

    async def _report(self, planned: float | None, deadline: float) -> Answer | Failure:
        """Report until the service answers, a failure is final, or ``deadline`` passes.

        Failures worth retrying are retried with exponential backoff and full jitter. The next
        regular report is counted from ``planned`` (the slot of a scheduled report) when the
        first attempt is answered, and from when the answered attempt was sent otherwise, so
        that it never follows an answer too closely.
        """
        timing = self._timing
        failures = 0
        last: Failure | None = None
        while anyio.current_time() < deadline:
            result = await self._attempt(planned if failures == 0 else None, deadline)
            if isinstance(result, Answer) or result.reason is not None:
                return result
            failures += 1
            now = anyio.current_time()
            if not result.timed_out:
                self._load.error(now)
            # A call cut short by the deadline says nothing new about why reports fail.
            if not (result.timed_out and now >= deadline and last is not None):
                last = result
            retry_at = min(now + timing.backoff(failures), deadline)
            self._load.warn(
                now,
                "report for task %r failed (%s); attempt %d, %s",
                self.task_id,
                result.description,
                failures,
                f"next in {retry_at - now:.3f} s"
                if retry_at < deadline
                else f"no time for another in the {deadline - now:.3f} s left",
            )
            await anyio.sleep_until(retry_at)
        return last or Failure("the deadline passed before a report could be sent")

    async def _attempt(self, planned: float | None, deadline: float) -> Answer | Failure:
        """Send one ReportTaskProgress as soon as one of the client's connections is free,
        and wait for its answer until ``call_timeout`` or ``deadline``, whichever is first.

        The next report is counted from ``planned`` (a scheduled first attempt), else from
        when this one was sent.
        """
        connections = self._load.connections
        if connections is not None:
            if connections.value > 0:
                connections.acquire_nowait()
            else:
                with anyio.CancelScope(deadline=deadline) as waiting:
                    await connections.acquire()
                if waiting.cancelled_caught:
                    return Failure("no connection of the client came free in time", timed_out=True)
        try:
            return await self._send(planned, deadline)
        finally:
            if connections is not None:
                connections.release()

    async def _send(self, planned: float | None, deadline: float) -> Answer | Failure:
        sent_at = anyio.current_time()
        call_deadline = min(sent_at + self._timing.call_timeout, deadline)
        self._attempts_started += 1
        attempt = self._attempts_started
        version = self._fields.version
        self._in_flight = (attempt, version)
        try:
            with anyio.CancelScope(deadline=call_deadline) as scope:
                response = await self._client.report_task_progress(
                    taskId=self.task_id, fields=self._fields.wire()
                )
        except Exception as exc:
            return read_failure(exc)
        finally:
            self._in_flight = None
        if scope.cancelled_caught:
            limit = "the deadline" if call_deadline == deadline else "call_timeout"
            return Failure(
                f"no answer within {call_deadline - sent_at:.3g} s ({limit})", timed_out=True
            )
        result = read_answer(response, sent_at, sent_at if planned is None else planned)
        if isinstance(result, Answer):
            self.beats += 1
            self.last_success = sent_at
            self._answered_version = version
            self._last_answered_attempt = attempt
            self._wake_waiters()
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "report %d for task %r answered in %.1f ms (canceled=%s)",
                    attempt,
                    self.task_id,
                    (anyio.current_time() - sent_at) * 1000,
                    result.canceled,
                )
        return result

    async def _final_report(self) -> None:
        """Send the fields that changed since the last answered report, bounded by call_timeout."""
        now = anyio.current_time()
        result = await self._report(planned=now, deadline=now + self._timing.call_timeout)
        if isinstance(result, Failure) and result.reason is None:
            self._load.warn(
                anyio.current_time(),
                "the last progress of task %r was not reported: %s",
                self.task_id,
                result.description,
            )
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
        return (
            CancelReason.LEASE_LOST,
            f"no report succeeded for {self._timing.lease_timeout:g} s; last failure: "
            f"{result.description}",
            result.error,
        )

    def _record_cancel(
        self, reason: CancelReason, detail: str, cause: BaseException | None
    ) -> None:
        self.cancel_reason = reason
        self._cancel_detail = detail
        self._cancel_cause = cause
        level = logging.INFO if reason is CancelReason.REQUESTED else logging.WARNING
        logger.log(
            level, "stopping the work of task %r: %s (%s)", self.task_id, reason.value, detail
        )
        self._wake_waiters()

    def _task_cancelled(self) -> TaskCancelled:
        assert self.cancel_reason is not None
        return TaskCancelled(self.task_id, self.cancel_reason, self._cancel_detail)

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
) -> T:
    """Await ``fn(*args)`` under a `Heartbeat` and return its result.

    Raises `TaskCancelled` if the heartbeat stopped it: there is no result to return then.
    """
    async with Heartbeat(
        client,
        task_id,
        interval=interval,
        fields=fields,
        lease_timeout=lease_timeout,
        call_timeout=call_timeout,
    ):
        return await fn(*args)
    raise AssertionError("unreachable: a cancelled heartbeat raises TaskCancelled")
