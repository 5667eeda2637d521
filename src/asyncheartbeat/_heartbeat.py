"""The heartbeat: the body's front. It holds the fields, the progress and the body's cancel
scope, and hands the task's lease to its client's reporter, which does all the rest."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar, TypeVarTuple

import anyio
import anyio.lowlevel

from ._datapipeline import ProgressClient
from ._errors import CancelReason, HeartbeatError
from ._fields import FieldsInput, ProgressFields, check_task_id
from ._reporter import Lease, Reporter
from ._reporter._lease import LeaseReporter, Stage
from ._reporting_thread import ReportingThread
from ._timing import DEFAULT_INTERVAL, DEFAULT_LEASE_TIMEOUT, Timing

T = TypeVar("T")
PosArgs = TypeVarTuple("PosArgs")


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
            (see `ProgressClient`), a `Reporter`, or a `ReportingThread` (the reports
            then go on while the body blocks the loop). Heartbeats given one client share
            its reporter.
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
        client: ProgressClient | Reporter | ReportingThread,
        task_id: str,
        *,
        interval: float = DEFAULT_INTERVAL,
        fields: FieldsInput | None = None,
        lease_timeout: float = DEFAULT_LEASE_TIMEOUT,
        call_timeout: float | None = None,
        raise_on_cancel: bool = True,
        stall_timeout: float | None = None,
    ) -> None:
        self._reporter: LeaseReporter
        if isinstance(client, ReportingThread):
            self._reporter = client
        else:
            raw_client = client.client if isinstance(client, Reporter) else client
            if not callable(getattr(raw_client, "report_task_progress", None)):
                raise TypeError(
                    f"client must have a report_task_progress coroutine method "
                    f"(an aiobotocore 'datapipeline' client), got {type(raw_client).__name__}"
                )
            self._reporter = Reporter.of(client)
        self.task_id = check_task_id(task_id)
        timing = Timing.check(interval, lease_timeout, call_timeout, stall_timeout)
        self._fields = ProgressFields(fields)
        # Fields may be set from any thread beside a ReportingThread: one change at a time,
        # each published as one snapshot.
        self._fields_lock = threading.Lock()
        self._lease = Lease(self.task_id, timing, (self._fields.version, self._fields.wire()))
        self._raise_on_cancel = raise_on_cancel
        # Whether the body runs under a stall watchdog, which progress() then feeds.
        self._watching = False
        self._thread: int | None = None  # the event loop's, once entered

    @property
    def cancel_reason(self) -> CancelReason | None:
        """Why the heartbeat stopped the work, or None while it has not."""
        return self._lease.cancel_reason

    @property
    def beats(self) -> int:
        """Reports the service answered, the acknowledgement included."""
        return self._lease.beats

    @property
    def last_success(self) -> float | None:
        """The anyio clock time at which the last answered report was sent; the lease counts
        from it. None before the acknowledgement."""
        return self._lease.last_success

    def __repr__(self) -> str:
        return (
            f"<Heartbeat task_id={self.task_id!r} state={self._lease.stage.value} "
            f"beats={self.beats} cancel_reason={self.cancel_reason}>"
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
        self._change_fields(lambda fields: fields.set(key, "stringValue", value))

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
        self._change_fields(lambda fields: fields.set(key, "refValue", object_id))

    def remove_field(self, key: str) -> None:
        """Stop sending ``key``. The service keeps the value it already has.
        Counts as progress.

        Args:
            key: The field's key; a key not set is ignored.

        Raises:
            HeartbeatError: The heartbeat has ended.
        """
        self._change_fields(lambda fields: fields.remove(key))

    def progress(self) -> None:
        """Tell the stall watchdog that the work advances, without a field to set.

        Nothing is sent: this only notes the time, so it may be called once per turn of a
        loop. Without a ``stall_timeout``, and outside the body, it does nothing. Beside a
        `ReportingThread` it works from any thread, blocking code included; otherwise call
        it from the event loop's thread (from a worker thread, through
        ``anyio.from_thread.run_sync(hb.progress)``).

        Raises:
            HeartbeatError: Called from another thread while a watchdog runs on the loop.
        """
        if self._watching:
            try:
                self._lease.last_progress = self._reporter.clock()
            except RuntimeError as exc:  # anyio's NoEventLoopError: not the loop's thread
                raise HeartbeatError(
                    "progress() needs the event loop's thread: from a worker thread, call "
                    "anyio.from_thread.run_sync(hb.progress)"
                ) from exc

    def _change_fields(self, change: Callable[[ProgressFields], None]) -> None:
        self._check_not_ended()
        with self._fields_lock:
            change(self._fields)
            # One snapshot, replaced whole: the reporter reads a consistent version and list.
            self._lease.fields = (self._fields.version, self._fields.wire())
        self.progress()

    @property
    def fields(self) -> list[dict[str, str]]:
        """The fields the next report will carry, in the API's shape (a copy)."""
        with self._fields_lock:
            return [dict(field) for field in self._fields.wire()]

    def _check_not_ended(self) -> None:
        if self._lease.stage in (Stage.CLOSING, Stage.CLOSED):
            raise HeartbeatError(
                f"the heartbeat of task {self.task_id!r} has ended: a field set now would never "
                f"be reported"
            )

    # -- entering and leaving -----------------------------------------------------------------

    async def __aenter__(self) -> Heartbeat:
        lease = self._lease
        if lease.stage is not Stage.NEW:
            raise RuntimeError("a Heartbeat can be entered only once: create one per task run")
        await self._reporter.start(lease)
        if lease.verdict is not None:
            # A context manager cannot skip its body: this raises whatever raise_on_cancel says.
            raise lease.stopped() from lease.verdict.error
        # The body runs in this scope, which the reporter cancels on a verdict; entered
        # here and left in __aexit__, by the task running the block.
        lease.body_scope.__enter__()
        self._thread = threading.get_ident()
        self._watching = lease.timing.stall_timeout is not None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        lease = self._lease
        body_cancelled_by_us = lease.body_scope.__exit__(exc_type, exc, traceback)
        self._watching = False
        # Cancellation, KeyboardInterrupt and SystemExit are not waited on for a report;
        # our own cancellation of a stalled body is: that task is still ours.
        ended_by_itself_or_us = exc is None or isinstance(exc, Exception) or body_cancelled_by_us
        # A stalled task is reported at once, fields changed or not: it is still ours only
        # if the service has not cancelled it meanwhile, which only a report answered after
        # the body's cleanup can tell (the runner then reports nothing).
        stalled = lease.cancel_reason is CancelReason.STALLED
        fields_changed = self._fields.version != lease.answered_version
        report_last = (
            ended_by_itself_or_us
            and (lease.verdict is None or stalled)
            and lease.crash is None
            and (fields_changed or stalled)
            and not lease.body_done
        )
        await self._reporter.end(lease, report_last=report_last)

        if lease.crash is not None:
            if isinstance(lease.crash, HeartbeatError):
                raise lease.crash
            raise HeartbeatError(f"the heartbeat of task {self.task_id!r} failed") from lease.crash
        if exc is not None and not body_cancelled_by_us:
            return False  # the body's own exception, or cancellation from outside: unchanged
        if lease.verdict is not None and self._raise_on_cancel:
            raise lease.stopped() from lease.verdict.error
        return body_cancelled_by_us

    async def _status_follows(self) -> bool:
        """The body's work is over, and a status sent before the heartbeat is left will say
        how it ended (`TaskRunner` awaits this): the reports go on holding the lease until
        then, but the work cannot stall any more. A status carries no fields, so the ones
        the body changed last go in a report first, instead of as the heartbeat is left.
        False if the lease ran out meanwhile: no status may follow, and leaving says why."""
        lease = self._lease
        if lease.ran_out(self._reporter.clock()):
            return False
        self._watching = False
        lease.body_done = True
        if self._fields.version != lease.answered_version:
            await self.beat()
        return True

    # -- reporting ----------------------------------------------------------------------------

    async def beat(self) -> None:
        """Report now and return once a report carrying the current fields was answered.

        A beat asked for while a report with the same fields is in flight waits for that one;
        otherwise it is carried by the next report, which starts at once unless a failed
        report is backing off. The regular schedule then counts from it.

        Raises:
            TaskStopped: The heartbeat stopped the work meanwhile (called from the body, the
                body's own cancellation comes first).
            HeartbeatError: The heartbeat is not running, ended before the report, or this
                was awaited on another thread's event loop.
        """
        lease = self._lease
        if lease.stage is not Stage.RUNNING:
            raise HeartbeatError(
                f"beat() needs the heartbeat of task {self.task_id!r} running; it is "
                f"{lease.stage.value}"
            )
        if threading.get_ident() != self._thread:
            # Awaited on another thread's event loop, it would wait for an answer that the
            # heartbeat's own loop signals, and hang.
            raise HeartbeatError(
                "beat() must be awaited on the event loop the heartbeat runs on: from another "
                "thread, call anyio.from_thread.run(hb.beat)"
            )
        self.progress()
        carried = await self._reporter.beat(lease)
        if lease.verdict is not None:
            # Called from the body, the body's own cancellation is delivered right here;
            # called from elsewhere, the caller learns of it from TaskStopped.
            await anyio.lowlevel.checkpoint()
            raise lease.stopped() from lease.verdict.error
        if not carried:
            raise HeartbeatError(f"the heartbeat of task {self.task_id!r} ended before beat()")


async def run_with_heartbeat(
    client: ProgressClient,
    task_id: str,
    fn: Callable[[*PosArgs], Awaitable[T]],
    *args: *PosArgs,
    interval: float = DEFAULT_INTERVAL,
    fields: FieldsInput | None = None,
    lease_timeout: float = DEFAULT_LEASE_TIMEOUT,
    call_timeout: float | None = None,
    stall_timeout: float | None = None,
) -> T:
    """Await ``fn(*args)`` under a `Heartbeat` and return its result.

    ```python
    rows = await run_with_heartbeat(client, task_id, copy_table, "orders", interval=30)
    ```

    ``fn`` has no heartbeat to report progress on, so a ``stall_timeout`` stops it that
    long after it started unless it returns first: a limit on its run time.

    The other arguments are those of `Heartbeat`, with its defaults.

    Args:
        fn: The async function to run.
        *args: Its positional arguments.

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


def call_async(what: str, fn: Callable[[*PosArgs], Awaitable[T]], *args: *PosArgs) -> Awaitable[T]:
    """``fn(*args)``, refused with `NotAsyncError` (``what`` names it) unless it returned an
    awaitable."""
    running = fn(*args)
    if not inspect.isawaitable(running):
        name = getattr(fn, "__qualname__", type(fn).__name__)
        raise NotAsyncError(
            f"{what} must be an async function: {name}(...) returned "
            f"{type(running).__name__}, not an awaitable"
        )
    return running


async def run_under(
    heartbeat: Heartbeat, what: str, fn: Callable[[*PosArgs], Awaitable[T]], *args: *PosArgs
) -> T:
    """Await ``fn(*args)`` under ``heartbeat``. ``fn`` is called first, so that a sync one
    (``what`` names it in the error) is refused before the task is acknowledged."""
    running = call_async(what, fn, *args)
    try:
        async with heartbeat:
            return await running
    finally:
        if inspect.iscoroutine(running):
            running.close()  # unawaited if the acknowledgement failed; else a no-op
    raise AssertionError("unreachable: a cancelled heartbeat raises TaskStopped")
