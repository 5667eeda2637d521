"""TaskRunner: poll for tasks, run each under a Heartbeat, report how it ended, shut down
gracefully."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import math
import socket
import sys
import traceback
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import anyio

from ._clock import current_time
from ._datapipeline import ACKNOWLEDGEMENT_LIMIT, LONGEST_POLL, client_config
from ._errors import CancelReason, HeartbeatError, stalled_detail
from ._fields import check_member
from ._heartbeat import Heartbeat, NotAsyncError, call_async, run_under
from ._log import fields, one_line
from ._model import member_shape
from ._reporter import Reporter
from ._reporter._calls import refusal_recheck
from ._reporter._lease import Stage
from ._reporting_thread import InThread, ReportingThread
from ._service import Answered, Final, Transient
from ._task import Task
from ._timing import (
    DEFAULT_INTERVAL,
    DEFAULT_LEASE_TIMEOUT,
    Timing,
    check_seconds,
    jittered_backoff,
)

logger = logging.getLogger("asyncheartbeat.runner")

Handler = Callable[[Task, Heartbeat], Awaitable[object]]
TaskEventKind = Literal["started", "finished", "false", "failed", "cancelled", "unreported"]
#: How long running tasks may go on once the runner is asked to stop, unless told otherwise.
SHUTDOWN_GRACE = 30.0

#: How long, in leases from the handler's end, a status is tried while the heartbeat
#: holds the lease: a throttled status queue drains far sooner at any concurrency the
#: account's 10 statuses/s allow; past this the service must be failing the call itself.
STATUS_LEASES = 3
#: When a call gives up: a time on the reporter's clock, or a function that tells it.
Deadline = float | Callable[[], float]

#: The ``errorId`` of a task reported FAILED because its heartbeat found it stalled.
STALLED_ERROR_ID = "TaskStalled"


class PreconditionFalse(Exception):
    """Raise from a handler to end the task with SetTaskStatus FALSE: the precondition it
    checks does not hold (the status the service allows beside FINISHED and FAILED).

    ``raise PreconditionFalse("no file for 2026-11-22 yet")``: once FALSE landed, the
    `TaskEvent` is ``"false"``, with this exception as its ``error``.
    """


class FailTask(Exception):
    """Raise from a handler to fail the task with these error fields (SetTaskStatus FAILED).

    Any other exception fails it too, with its type as ``errorId`` and its traceback.
    Each field is cut to the service's limits; an ``error_id`` starting with ``Service_``,
    which the service reserves, is prefixed ``Task_``.

    ```python
    raise FailTask("nothing to copy", error_id="EmptyInput")
    ```

    Args:
        message: The ``errorMessage``.
        error_id: The ``errorId``, a code your pipeline's readers can match on.
        stack_trace: The ``errorStackTrace``; None for this exception's own traceback.

    Attributes:
        error_id: The ``errorId`` it reports.
        stack_trace: The ``errorStackTrace`` it reports, or None for its traceback.
    """

    def __init__(
        self, message: str, *, error_id: str = "TaskFailed", stack_trace: str | None = None
    ) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.stack_trace = stack_trace


@dataclasses.dataclass(frozen=True, slots=True)
class TaskEvent:
    """What happened to a task, for `TaskRunner`'s ``on_event``.

    - ``started``: its handler was called.
    - ``finished`` / ``false`` / ``failed``: the handler returned / raised
      `PreconditionFalse` / raised anything else, or the heartbeat stopped it as stalled
      (``reason`` ``STALLED``), and SetTaskStatus FINISHED / FALSE / FAILED landed.
    - ``cancelled``: the heartbeat stopped the work for any other reason (``reason`` says
      why; nothing is reported, the task is no longer ours), or the runner shut down
      (``reason`` None: the service reassigns it).
    - ``unreported``: the handler ended but its status did not land (SetTaskStatus kept
      failing for three leases, was refused, or the heartbeat stopped while it
      was sent: ``reason`` then says why); the service times the attempt out and retries it.

    Attributes:
        kind: ``"started"``, ``"finished"``, ``"false"``, ``"failed"``, ``"cancelled"`` or
            ``"unreported"``, as above.
        task: The task.
        duration: Seconds since the task started (0 for ``"started"``).
        reason: Why it was cancelled, or why its status was refused; None otherwise.
        error: The handler's exception (``"failed"``, or ``"unreported"`` after one),
            `TaskStopped` for a cancellation by the heartbeat, or what the handler raised
            after it; None otherwise.
    """

    kind: TaskEventKind
    task: Task
    #: Seconds since the task started (0 for "started").
    duration: float
    #: Why it was cancelled, why its status was refused, or ``STALLED`` for a task failed
    #: as stalled; None otherwise.
    reason: CancelReason | None = None
    #: The handler's exception ("failed", or "unreported" after one), `TaskStopped` for a
    #: cancellation by the heartbeat or a stall, or what the handler raised after it.
    error: BaseException | None = None


class TaskRunner:
    """Poll a worker group for tasks and run each with ``handler(task, heartbeat)``.

    At most ``concurrency`` tasks run at once, and no poll is made while all are busy. Each
    task runs under a `Heartbeat`; the handler returning reports FINISHED, raising reports
    FAILED, and a task the heartbeat stopped is not reported (it is no longer ours), except
    a stalled one: that is reported FAILED with ``errorId`` ``TaskStalled``, for the
    service to retry.
    `run` returns after `stop` or a ``terminate`` answer to the runner's own heartbeat, and
    raises after a PollForTask refusal or a handler that is not async; either way running
    tasks get ``shutdown_grace`` seconds to finish, then are cancelled and left to the
    service to reassign.

    ```python
    async with get_session().create_client(
        "datapipeline", config=TaskRunner.client_config()
    ) as client:
        await TaskRunner(client, worker_group="wg", handler=handle, concurrency=8).run()
    ```

    What it promises, rule by rule: [A task runner in a few lines](../task-runner.md).

    Args:
        client: An aiobotocore DataPipeline client whose read timeout outlasts the 90 s long
            poll (make it with `TaskRunner.client_config`), a `ThreadedClient` (on trio), its
            `Reporter`, or a `ReportingThread`: every call (polls, statuses, heartbeats) then
            goes from its thread, and the reports go on while a handler blocks the loop.
        worker_group: The worker group to poll, exactly as the pipeline names it.
        handler: ``async def handler(task: Task, heartbeat: Heartbeat)``, called once per
            task under its heartbeat. Returning reports FINISHED; raising `FailTask` or
            any exception reports FAILED; raising `PreconditionFalse` reports FALSE.
        concurrency: The most tasks running at once; no poll is made while all run.
        hostname: The ``hostname`` sent with each poll and runner heartbeat. Default: this
            machine's.
        instance_identity: PollForTask's ``instanceIdentity`` (``{"document": ...,
            "signature": ...}`` on EC2), sent when given.
        taskrunner_id: The ``taskrunnerId`` of ReportTaskRunnerHeartbeat. Default: a new
            UUID.
        interval: Each task's `Heartbeat` ``interval``, in seconds.
        lease_timeout: Each task's `Heartbeat` ``lease_timeout``, in seconds; SetTaskStatus
            is sent while the heartbeat still holds the lease, and tried for as long as it
            holds (at most three leases).
        call_timeout: Each task's `Heartbeat` ``call_timeout``; None for its default.
        runner_heartbeat_interval: Seconds between the runner's own
            ReportTaskRunnerHeartbeat calls (15 minutes by default).
        shutdown_grace: Seconds running tasks get to finish once the runner stops; those
            still running then are cancelled and not reported.
        max_poll_pause: The longest pause, in seconds, after an empty or failed poll. The
            pauses are drawn at random from a range that doubles each time, up to this.
        on_event: Called with a `TaskEvent` as each task starts and ends. A hook that
            raises is logged and does not stop the runner.
        stall_timeout: Each task's stall timeout, as for `Heartbeat`: a handler that shows
            no progress for this many seconds is stopped and its task reported FAILED
            with ``errorId`` ``TaskStalled``; None (the default) never stops one for it.

    Raises:
        TypeError: ``client`` lacks one of the four calls a runner makes, or ``handler`` is
            not callable.
        ValueError: The client's read timeout would cut the long poll (90 s or less), or an
            option is out of range.
        HeartbeatError: An aiobotocore client made on trio, where it cannot run (use
            `ThreadedClient`).

    Attributes:
        reporter: What every call of the runner and its heartbeats goes through: the
            client's `Reporter`, or the `ReportingThread` given.
        worker_group: The worker group it polls.
        hostname: The hostname it sends.
        taskrunner_id: The ``taskrunnerId`` it sends.
        concurrency: The most tasks it runs at once.
        shutdown_grace: Seconds running tasks get at shutdown.
        running: Tasks running now.
    """

    def __init__(
        self,
        client: Any,
        *,
        worker_group: str,
        handler: Handler,
        concurrency: int = 1,
        hostname: str | None = None,
        instance_identity: Mapping[str, str] | None = None,
        taskrunner_id: str | None = None,
        interval: float = DEFAULT_INTERVAL,
        lease_timeout: float = DEFAULT_LEASE_TIMEOUT,
        call_timeout: float | None = None,
        runner_heartbeat_interval: float = 900.0,
        shutdown_grace: float = SHUTDOWN_GRACE,
        max_poll_pause: float = 30.0,
        on_event: Callable[[TaskEvent], object] | None = None,
        stall_timeout: float | None = None,
    ) -> None:
        if not isinstance(client, ReportingThread):  # whose client is made in its thread
            raw_client = client.client if isinstance(client, Reporter) else client
            for method in ("poll_for_task", "report_task_progress", "set_task_status",
                           "report_task_runner_heartbeat"):  # fmt: skip
                if not callable(getattr(raw_client, method, None)):
                    raise TypeError(
                        f"client must have a {method} method (an aiobotocore 'datapipeline' "
                        f"client), got {type(raw_client).__name__}"
                    )
            _check_read_timeout(raw_client)
        if not callable(handler):
            raise TypeError(f"handler must be an async function, got {type(handler).__name__}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(
                f"concurrency must be a whole number of at least 1, not {concurrency!r}"
            )
        #: What every call of this runner and its heartbeats goes through.
        self.reporter: Reporter | ReportingThread = (
            client if isinstance(client, ReportingThread) else Reporter.of(client)
        )
        if worker_group == "":
            raise ValueError("worker_group must not be empty: PollForTask matches it exactly")
        self.worker_group = check_member(
            "PollForTaskInput", "workerGroup", worker_group, name="worker_group"
        )
        self.hostname = check_member(
            "PollForTaskInput", "hostname", hostname or socket.gethostname(), name="hostname"
        )
        self.taskrunner_id = check_member(
            "ReportTaskRunnerHeartbeatInput",
            "taskrunnerId",
            taskrunner_id or str(uuid.uuid4()),
            name="taskrunner_id",
        )
        self._instance_identity = dict(instance_identity) if instance_identity else None
        self._handler = handler
        self.concurrency = concurrency
        self._timing = Timing.check(interval, lease_timeout, call_timeout, stall_timeout)
        self._runner_heartbeat_interval = check_seconds(
            "runner_heartbeat_interval", runner_heartbeat_interval
        )
        self.shutdown_grace = check_seconds("shutdown_grace", shutdown_grace, allow_zero=True)
        self._max_poll_pause = check_seconds("max_poll_pause", max_poll_pause)
        self._on_event = on_event

        self._slots = anyio.Semaphore(concurrency)
        self._stopping = False
        self._waiting: anyio.CancelScope | None = None  # a poll or a pause, which stop() ends
        self._started = False
        self._refusal: BaseException | None = None
        #: The next poll waits at least this long: a refused poll's recheck.
        self._recheck_poll_after = 0.0
        self._not_async: NotAsyncError | None = None  # a handler that returned no awaitable
        # What ends run() with an exception of its own after the grace: a handler's
        # SystemExit, or a call that raised (never a group).
        self._failure: BaseException | None = None
        self._copies: dict[str, Heartbeat | None] = {}  # running tasks, by task id
        self._duplicates_logged: set[str] = set()
        #: Tasks running now.
        self.running = 0

    client_config = staticmethod(client_config)
    """The client configuration a runner needs: `asyncheartbeat.client_config`, reads
    that outlast the long poll and no retries inside botocore."""

    def stop(self) -> None:
        """Stop polling (an in-flight poll is abandoned at once) and let `run` wind down.

        Safe to call from a handler, a hook or a signal handler's task, more than once.
        """
        self._stopping = True
        if self._waiting is not None:
            self._waiting.cancel()

    async def run(self) -> None:
        """Poll and run tasks until stopped, and return once nothing is left running.

        Raises:
            HeartbeatError: PollForTask was refused for good (access denied, bad
                credentials), after the running tasks' grace.
            TypeError: The handler returned something that cannot be awaited (it is not
                an ``async def``). The runner stops at the first such task and does not
                report it, so that it is handed out again rather than failed.
            RuntimeError: The runner ran already: make another.
            SystemExit: A handler raised it (or KeyboardInterrupt, or GeneratorExit: that
                one, the same object), after the other tasks' grace.
            Exception: A call that raised rather than failed (a closed client), as it
                is, after the running tasks' grace. Never an exception group.
        """
        if self._started:
            raise RuntimeError("a TaskRunner runs once: create another to run again")
        self._started = True
        logger.info(
            "task runner %r polling worker group %r (%d at a time)",
            self.taskrunner_id, self.worker_group, self.concurrency,
            extra=self._fields("runner_started", concurrency=self.concurrency),
        )  # fmt: skip
        try:
            async with anyio.create_task_group() as runner:
                runner.start_soon(self._keep_runner_alive, name="asyncheartbeat:runner-heartbeat")
                async with anyio.create_task_group() as tasks:
                    await self._poll_until_stopped(tasks)
                    if self.running:
                        logger.info(
                            "stopping: %d running %s %g s to finish", self.running,
                            "task gets" if self.running == 1 else "tasks get",
                            self.shutdown_grace,
                            extra=self._fields(
                                "runner_stopping", running=self.running, delay=self.shutdown_grace
                            ),
                        )  # fmt: skip
                    tasks.cancel_scope.deadline = current_time() + self.shutdown_grace
                runner.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            if (error := _one_of(group)) is None:
                raise
            self._fail(error)  # the docs promise a plain exception
        logger.info(
            "task runner %r stopped", self.taskrunner_id, extra=self._fields("runner_stopped")
        )
        if self._failure is not None:
            raise self._failure
        if self._not_async is not None:
            raise self._not_async
        if self._refusal is not None:
            raise HeartbeatError(f"PollForTask was refused: {self._refusal}") from self._refusal

    # -- polling ---------------------------------------------------------------------------------

    async def _poll_until_stopped(self, tasks: anyio.abc.TaskGroup) -> None:
        quiet = 0  # polls in a row that brought no task
        while not self._stopping:
            task_object = None
            with anyio.CancelScope() as self._waiting:
                await self._slots.acquire()
                try:
                    task_object = await self._poll()
                except Exception as error:  # a plain one out of run(), after the grace
                    self._fail(error)
                finally:
                    if task_object is None:
                        self._slots.release()
                if task_object is None and not self._stopping:
                    quiet += 1
                    pause = jittered_backoff(quiet, start=0.25, cap=self._max_poll_pause)
                    await anyio.sleep(max(pause, self._recheck_poll_after))
            self._waiting = None
            if self._refusal is not None:
                return
            if task_object is None:
                continue
            quiet = 0
            try:
                task = Task.from_wire(task_object)
            except ValueError as error:
                # One bad task object is that task's failure, never the runner's.
                tasks.start_soon(self._fail_malformed, task_object, error)
                continue
            if task.task_id in self._copies:
                self._slots.release()
                tasks.start_soon(self._acknowledge_duplicate, task)
                continue
            self._copies[task.task_id] = None
            self.running += 1
            tasks.start_soon(self._run_task, task, name=f"asyncheartbeat:task:{task.task_id}")

    async def _poll(self) -> Mapping[str, Any] | None:
        params: dict[str, Any] = {"workerGroup": self.worker_group, "hostname": self.hostname}
        if self._instance_identity:
            params["instanceIdentity"] = self._instance_identity
        result = await self.reporter.calls.long_call("PollForTask", params)
        self._recheck_poll_after = refusal_recheck(result, math.inf)
        if isinstance(result, Answered):
            task_object: Mapping[str, Any] | None = result.response.get("taskObject") or None
            return task_object
        if isinstance(result, Final) and result.reason is CancelReason.REJECTED:
            logger.error(
                "PollForTask refused, stopping: %s", one_line(result.description),
                extra=self._fields(
                    "poll_refused", operation="PollForTask", reason=result.reason,
                    detail=one_line(result.description),
                ),
            )  # fmt: skip
            self._refusal = result.error or HeartbeatError(result.description)
            self._stopping = True
        else:
            logger.warning(
                "PollForTask failed: %s", one_line(result.description),
                extra=self._fields(
                    "poll_failed", operation="PollForTask", detail=one_line(result.description)
                ),
            )  # fmt: skip
        return None

    # -- one task ---------------------------------------------------------------------------------

    async def _run_task(self, task: Task) -> None:
        heartbeat = Heartbeat(
            self.reporter,
            task.task_id,
            interval=self._timing.interval,
            lease_timeout=self._timing.lease_timeout,
            call_timeout=self._timing.call_timeout,
            stall_timeout=self._timing.stall_timeout,
        )
        run = _TaskRun(task, heartbeat, current_time())
        self._emit(run.event("started"))
        self._copies[task.task_id] = heartbeat
        run.stall_watch = self._watch_stall(heartbeat)
        running: Awaitable[object] | None = None
        try:
            try:
                running = call_async("handler", self._handler, task, heartbeat)
                await run_under(heartbeat, "handler", self._handle_then_report, run, running)
            except NotAsyncError as error:
                # The program's mistake, not the task's: every task would fail the same way,
                # each spending one of its retries. The runner stops, leaving this task (not
                # acknowledged) to be handed out again, and run() raises.
                self._refuse_handler(error)
                self._emit(run.event("cancelled"))
            except Exception as error:  # TaskStopped included: the heartbeat says why
                await self._after_heartbeat(run, error)
            else:
                await self._after_heartbeat(run, None)
        except anyio.get_cancelled_exc_class():
            if run.ended is None:
                self._emit(run.event("cancelled"))
            else:  # the runner's grace ran out while its status was being sent
                self._emit_ended(run.ended.event(run), run.ended.outcome or Transient(
                    "the runner stopped before the status landed"))  # fmt: skip
            raise
        except BaseException as error:
            # SystemExit, KeyboardInterrupt or GeneratorExit from the handler: a graceful
            # shutdown (the other tasks get their grace), then run() raises it.
            self._emit(run.event("cancelled", error=self._fail(_exiting(error) or error)))
        finally:
            if inspect.iscoroutine(running):
                running.close()  # unawaited if the acknowledgement failed; else a no-op
            del self._copies[task.task_id]
            self.running -= 1
            self._slots.release()

    async def _handle_then_report(self, run: _TaskRun, running: Awaitable[object]) -> None:
        """Inside the heartbeat: await the handler, then send the status that says how it
        ended, while the heartbeat's reports go on holding the lease. A status throttled by
        a fleet sharing the account's 10/s is so never lost while the reports land. When the
        heartbeat stops the work, its reason is the task's end: nothing is sent."""
        heartbeat = run.heartbeat
        try:
            await running
        except Exception as error:
            if heartbeat.cancel_reason is not None:
                raise
            false = isinstance(error, PreconditionFalse)
            ended = _HandlerEnd("FALSE" if false else "FAILED", error)
        else:
            if heartbeat.cancel_reason is not None:
                return  # leaving the heartbeat raises TaskStopped
            ended = _HandlerEnd("FINISHED", None)
        if not await heartbeat._status_follows():
            return  # leaving the heartbeat raises TaskStopped: the lease ran out
        run.ended = ended
        # Not bounded by the lease: the heartbeat's verdict cuts the status when the lease
        # is lost. Counted to the lease end, a throttled status would turn urgent before
        # each one and retry in bursts, and a refusal would be rechecked too soon.
        give_up_at = self.reporter.clock() + STATUS_LEASES * self._timing.lease_timeout
        run.ended.outcome = await self._set_status(
            heartbeat.task_id, run.ended.status, give_up_at, **run.ended.fields()
        )

    async def _after_heartbeat(self, run: _TaskRun, error: Exception | None) -> None:
        """The task's last event, once its heartbeat was left, raising ``error`` or not
        (`TaskStopped`, or its own failure)."""
        heartbeat, ended = run.heartbeat, run.ended
        if ended is not None and ended.outcome is not None:
            # The status landed (or failed) first: a verdict after it changes nothing.
            self._emit_ended(ended.event(run), ended.outcome)
        elif ended is not None:
            # Stopped while its status was being sent: the task is not ours to report any
            # more (cancelled, gone, or its lease lost).
            self._emit(run.event("unreported", reason=heartbeat.cancel_reason, error=ended.error))
        elif heartbeat.cancel_reason is CancelReason.STALLED:
            await self._fail_stalled(run, error)  # what its cleanup raised changes nothing
        elif heartbeat.cancel_reason is not None:
            # The heartbeat stopped the work: the task is no longer ours to report, whatever
            # the handler's cleanup raised afterwards.
            self._emit(run.event("cancelled", reason=heartbeat.cancel_reason, error=error))
        else:  # the heartbeat itself failed (HeartbeatError): the task is still ours
            await self._report_left(run, _HandlerEnd("FAILED", error))

    async def _report_left(
        self, run: _TaskRun, ended: _HandlerEnd, *, fields: dict[str, str] | None = None
    ) -> None:
        """Report a task whose heartbeat was left: while the lease it bought holds."""
        deadline = self._lease_left_by(self.reporter, run.heartbeat.last_success)
        outcome = await self._set_status(
            run.task.task_id,
            ended.status,
            deadline,
            **(ended.fields() if fields is None else fields),
        )
        self._emit_ended(ended.event(run), outcome)

    async def _fail_stalled(self, run: _TaskRun, error: Exception | None) -> None:
        # Still ours, unlike every other reason: FAILED, so that the service retries it.
        assert self._timing.stall_timeout is not None
        ended = _HandlerEnd("FAILED", error, reason=CancelReason.STALLED)
        if run.stall_watch is not None and (outcome := await run.stall_watch.result()) is not None:
            if isinstance(outcome, Exception):  # raised rather than failed
                self._fail(outcome)
                outcome = Transient(_printable(outcome, str), error=outcome)
            self._emit_ended(ended.event(run), outcome)
            return
        fields = _stalled_fields(stalled_detail(self._timing.stall_timeout), _stopped_at(error))
        await self._report_left(run, ended, fields=fields)

    def _emit_ended(self, ended: TaskEvent, outcome: Literal[True] | Transient | Final) -> None:
        """The task's last event: ``ended`` if its status landed, else ``unreported``."""
        if outcome is not True:
            reason = getattr(outcome, "reason", None)
            ended = dataclasses.replace(ended, kind="unreported", reason=reason)
        self._emit(ended)

    def _watch_stall(self, heartbeat: Heartbeat) -> StallWatch | None:
        """With a `ReportingThread` and a stall timeout: watch for a stall in the thread. A
        handler stuck in sync code may not yield before its lease ends, so the thread
        reports it FAILED itself."""
        if not isinstance(self.reporter, ReportingThread) or self._timing.stall_timeout is None:
            return None
        return self.reporter.start_in_thread(self._fail_stalled_in_thread, heartbeat)

    async def _fail_stalled_in_thread(
        self, heartbeat: Heartbeat
    ) -> Literal[True] | Transient | Final | Exception | None:
        """In the `ReportingThread`: once the heartbeat finds the handler stalled, end its
        reports and report the task FAILED at once, with where the handler is stuck. None if
        the heartbeat ended first, or for another reason (the handler's side reports it)."""
        assert isinstance(self.reporter, ReportingThread)
        assert self._timing.stall_timeout is not None
        reporter, lease = self.reporter.reporter, heartbeat._lease
        while lease.verdict is None and lease.stage is not Stage.CLOSED:
            await lease.wait_for_change()
        if lease.cancel_reason is not CancelReason.STALLED or lease.stage is not Stage.RUNNING:
            return None
        frame = sys._current_frames().get(heartbeat._thread or 0)
        where = "".join(traceback.format_stack(frame)) if frame is not None else None
        since = lease.last_success
        await reporter.end(lease, report_last=False)  # this status says all there is to say
        fields = _stalled_fields(stalled_detail(self._timing.stall_timeout), where)
        try:
            return await self._send_status(
                reporter, lease.task_id, "FAILED", self._lease_left_by(reporter, since), **fields
            )
        except Exception as error:  # handed to the runner's side, which fails on it
            return error

    async def _acknowledge_duplicate(self, task: Task) -> None:
        """A poll handed out a task already running here: the running copy keeps it, and
        its heartbeat answers for the handout."""
        if task.task_id not in self._duplicates_logged:
            self._duplicates_logged.add(task.task_id)
            logger.warning(
                "PollForTask handed out task %r, which already runs here: not started again",
                task.task_id, extra=self._fields("task_duplicate", task_id=task.task_id),
            )  # fmt: skip
        heartbeat = self._copies.get(task.task_id)
        if heartbeat is not None:
            with contextlib.suppress(HeartbeatError):  # it ended meanwhile: nothing to say
                await heartbeat.beat()

    def _fail(self, error: BaseException) -> BaseException:
        """End the runner gracefully; run() then raises ``error`` (the first such), which
        this returns."""
        if self._failure is None:
            self._failure = error
            if not isinstance(error, SystemExit | KeyboardInterrupt | GeneratorExit):
                logger.error(
                    "stopping on %s", _printable(error, repr),
                    extra=self._fields("runner_failed", detail=_printable(error, repr)),
                )  # fmt: skip
            else:
                logger.warning(
                    "a handler raised %s: stopping", type(error).__name__,
                    extra=self._fields("runner_exiting", detail=type(error).__name__),
                )  # fmt: skip
        self.stop()
        return error

    def _refuse_handler(self, error: NotAsyncError) -> None:
        if self._not_async is None:
            self._not_async = error
            logger.error("%s; stopping", error, extra=self._fields("handler_not_async"))
        self.stop()

    async def _fail_malformed(self, task_object: object, error: ValueError) -> None:
        """Report a task whose object could not be read FAILED, if it has a usable taskId."""
        try:
            task_id = task_object.get("taskId") if isinstance(task_object, Mapping) else None
            if not isinstance(task_id, str) or member_shape("SetTaskStatusInput", "taskId").problem(
                task_id
            ):
                logger.error(
                    "PollForTask handed out a malformed task with no usable taskId, not "
                    "reported: %s", one_line(error),
                    extra=self._fields("task_malformed", detail=one_line(error)),
                )  # fmt: skip
                return
            logger.error(
                "task %r from PollForTask is malformed, reporting it FAILED: %s",
                task_id, one_line(error),
                extra=self._fields("task_malformed", task_id=task_id, detail=one_line(error)),
            )  # fmt: skip
            await self._set_status(
                task_id, "FAILED", self._lease_left_by(self.reporter, None),
                errorId="MalformedTaskObject",
                errorMessage=_fit(str(error), "errorMessage"),
            )  # fmt: skip
        finally:
            self._slots.release()

    async def _set_status(
        self, task_id: str, status: str, deadline: Deadline, **error_fields: str
    ) -> Literal[True] | Transient | Final:
        """SetTaskStatus, as `_send_status` says, through the runner's reporter."""
        try:
            return await self._send_status(self.reporter, task_id, status, deadline, **error_fields)
        except Exception as error:  # a plain one out of run(), after the grace
            self._fail(error)
            return Transient(_printable(error, str), error=error)

    async def _send_status(
        self,
        via: Reporter | ReportingThread,
        task_id: str,
        status: str,
        deadline: Deadline,
        **error_fields: str,
    ) -> Literal[True] | Transient | Final:
        """SetTaskStatus, retried on transient failures for as long as the task is ours:
        until ``deadline`` (on ``via``'s clock). True once it landed, else the failure."""
        result = await via.calls.call(
            "SetTaskStatus",
            {"taskId": task_id, "taskStatus": status, **error_fields},
            deadline=deadline,
            task_id=task_id,
            backoff_start=self._timing.backoff_start,
            backoff_cap=self._timing.interval,
        )
        if isinstance(result, Answered):
            return True
        if isinstance(result, Final):
            logger.warning(
                "SetTaskStatus %s for task %r refused: %s",
                status, task_id, one_line(result.description),
                extra=self._fields(
                    "status_refused", operation="SetTaskStatus", task_id=task_id,
                    status=status, reason=result.reason, detail=one_line(result.description),
                ),
            )  # fmt: skip
        else:
            logger.error(
                "SetTaskStatus %s for task %r failed, giving up: %s",
                status, task_id, one_line(result.description),
                extra=self._fields(
                    "status_failed", operation="SetTaskStatus", task_id=task_id,
                    status=status, detail=one_line(result.description),
                ),
            )  # fmt: skip
        return result

    def _lease_left_by(self, via: Reporter | ReportingThread, since: float | None) -> float:
        """When the lease bought by the report sent at ``since`` runs out (a heartbeat's
        last_success, on ``via``'s clock), or the acknowledgement window of a task never
        reported."""
        if since is None:
            return via.clock() + min(self._timing.lease_timeout, ACKNOWLEDGEMENT_LIMIT)
        return since + self._timing.lease_timeout

    def _fields(self, event: str, **values: Any) -> dict[str, Any]:
        """``extra=`` for a record of this runner."""
        return fields(
            event, taskrunner_id=self.taskrunner_id, worker_group=self.worker_group, **values
        )

    def _emit(self, event: TaskEvent) -> None:
        level = logging.WARNING if event.kind in ("failed", "unreported") else logging.INFO
        how = {
            "started": f"started (pipeline {event.task.pipeline_id!r}, "
            f"attempt {event.task.attempt_id!r})",
            "finished": f"finished in {event.duration:.1f} s",
            "false": f"ended FALSE (its precondition does not hold) in {event.duration:.1f} s",
            "failed": f"failed after {event.duration:.1f} s: "
            f"{one_line(_printable(event.error, repr))}",
            "cancelled": f"cancelled after {event.duration:.1f} s: "
            + (event.reason.value if event.reason else "runner shutting down, left to reassign"),
            "unreported": f"ended after {event.duration:.1f} s, but its status was not "
            f"reported ({event.reason.value if event.reason else 'SetTaskStatus failed'}): "
            f"the service will time the attempt out",
        }[event.kind]
        task = event.task
        logger.log(
            level, "task %r %s", task.task_id, how,
            extra=self._fields(
                f"task_{event.kind}", task_id=task.task_id, pipeline_id=task.pipeline_id,
                attempt_id=task.attempt_id, reason=event.reason,
                duration=event.duration if event.kind != "started" else None,
                detail=one_line(_printable(event.error, repr)) if event.error else None,
            ),
        )  # fmt: skip
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # an operator's hook must not take the runner down
                logger.exception(
                    "on_event hook failed for %s of task %r", event.kind, task.task_id,
                    extra=self._fields("on_event_failed", task_id=task.task_id),
                )  # fmt: skip

    # -- the runner's own heartbeat -------------------------------------------------------------

    async def _keep_runner_alive(self) -> None:
        params = {
            "taskrunnerId": self.taskrunner_id,
            "workerGroup": self.worker_group,
            "hostname": self.hostname,
        }
        interval = self._runner_heartbeat_interval
        while True:
            # Retried by the reporter's calls until the next one is due; a miss is only logged.
            try:
                result = await self.reporter.calls.call(
                    "ReportTaskRunnerHeartbeat", params,
                    deadline=self.reporter.clock() + interval, backoff_start=1.0,
                    backoff_cap=interval,
                )  # fmt: skip
            except Exception as error:  # a plain one out of run(), after the grace
                self._fail(error)
                return
            if isinstance(result, Answered) and result.response.get("terminate") is True:
                logger.info(
                    "the service asked task runner %r to terminate",
                    self.taskrunner_id,
                    extra=self._fields("runner_terminate", operation="ReportTaskRunnerHeartbeat"),
                )
                self.stop()
                return
            await anyio.sleep(interval if isinstance(result, Answered) else 0)


def _check_read_timeout(client: Any) -> None:
    config = getattr(getattr(client, "meta", None), "config", None)
    read_timeout = getattr(config, "read_timeout", None)
    if isinstance(read_timeout, int | float) and read_timeout <= LONGEST_POLL:
        raise ValueError(
            f"the client's read_timeout ({read_timeout:g} s) would cut PollForTask's long poll "
            f"(up to {LONGEST_POLL:g} s): create it with config=TaskRunner.client_config()"
        )


def _stopped_at(error: Exception | None) -> str | None:
    """Where the handler was waiting when it was stopped: the stack of the cancellation
    that stopped it (the `TaskStopped`'s or its cleanup's context)."""
    cancelled = error.__context__ if error is not None else None
    if isinstance(cancelled, anyio.get_cancelled_exc_class()) and cancelled.__traceback__:
        return "".join(traceback.format_tb(cancelled.__traceback__))
    return None


def _stalled_fields(detail: str, where: str | None) -> dict[str, str]:
    """The error fields of a task stopped as stalled: its errorId and ``detail``, and as
    errorStackTrace, ``where`` the handler was (most recent call last), if known."""
    trace = f"{STALLED_ERROR_ID}: {detail}\n"
    if where is not None:
        trace = f"The handler was stopped here (most recent call last):\n{where}{trace}"
    return _error_fields(FailTask(detail, error_id=STALLED_ERROR_ID, stack_trace=trace))


def _error_fields(error: Exception) -> dict[str, str]:
    """errorId, errorMessage and errorStackTrace for a failed task, cut to the model's limits."""
    if isinstance(error, FailTask):
        error_id, trace = error.error_id, error.stack_trace
    else:
        error_id, trace = type(error).__name__, None
    if error_id.startswith("Service_"):  # reserved for the service itself
        error_id = f"Task_{error_id}"
    if trace is None:
        trace = "".join(traceback.format_exception(error))
    message = _printable(error, str) or error_id
    return {
        "errorId": _fit(error_id, "errorId"),
        "errorMessage": _fit(message, "errorMessage"),
        # The end of a traceback says most: where it failed and why.
        "errorStackTrace": _fit(trace, "errorStackTrace", keep_end=True),
    }


def _printable(error: BaseException | None, show: Callable[[object], str]) -> str:
    """``show(error)``, or a placeholder if that raises: an exception that cannot be
    printed still fails its task, never the runner."""
    try:
        return show(error)
    except Exception:
        return f"<{type(error).__name__}: its {show.__name__}() raised>"


def _exiting(error: BaseException) -> BaseException | None:
    """The SystemExit, KeyboardInterrupt or GeneratorExit in ``error``, if any."""
    if isinstance(error, SystemExit | KeyboardInterrupt | GeneratorExit):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := _exiting(inner)) is not None:
                return found
    return None


def _one_of(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The exception ``group`` stands for: its first that is not a cancellation."""
    cancelled = anyio.get_cancelled_exc_class()
    leaves: list[BaseException] = []
    todo: list[BaseException] = [group]
    while todo:
        error = todo.pop(0)
        if isinstance(error, BaseExceptionGroup):
            todo[:0] = error.exceptions
        elif not isinstance(error, cancelled):
            leaves.append(error)
    return _exiting(group) or (leaves[0] if leaves else None)


def _fit(value: str, member: str, *, keep_end: bool = False) -> str:
    shape = member_shape("SetTaskStatusInput", member)
    if shape.pattern is not None:
        value = "".join(c if shape.pattern.fullmatch(c) else "?" for c in value)
    limit = shape.max_length
    if limit is not None and len(value) > limit:
        value = "…" + value[-(limit - 1) :] if keep_end else value[: limit - 1] + "…"
    return value or "?"


StallWatch = InThread[Literal[True] | Transient | Final | Exception | None]


_ENDED_KIND: dict[str, TaskEventKind] = {
    "FINISHED": "finished",
    "FALSE": "false",
    "FAILED": "failed",
}


@dataclasses.dataclass
class _HandlerEnd:
    """How a handler ended, the status that says so, and how that status fared."""

    status: Literal["FINISHED", "FALSE", "FAILED"]
    error: Exception | None
    reason: CancelReason | None = None
    outcome: Literal[True] | Transient | Final | None = None

    def fields(self) -> dict[str, str]:
        """The status's error fields: a FAILED one says what was raised."""
        if self.status != "FAILED" or self.error is None:
            return {}
        return _error_fields(self.error)

    def event(self, run: _TaskRun) -> TaskEvent:
        """The event for its status landed (``_emit_ended`` makes it unreported if not)."""
        return run.event(_ENDED_KIND[self.status], reason=self.reason, error=self.error)


@dataclasses.dataclass
class _TaskRun:
    """One task run by the runner: its heartbeat, and how its handler ended."""

    task: Task
    heartbeat: Heartbeat
    started: float
    stall_watch: StallWatch | None = None
    ended: _HandlerEnd | None = None

    def event(self, kind: TaskEventKind, **details: Any) -> TaskEvent:
        return TaskEvent(kind, self.task, current_time() - self.started, **details)
