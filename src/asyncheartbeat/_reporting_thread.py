"""`ReportingThread`: a client's reporter on a thread and an event loop of its own, so that
heartbeats go on while job code blocks the job's event loop.

The thread holds the client and its `Reporter`; a heartbeat hands its lease across with the
same three calls as to a reporter on its own loop (`start`, `beat`, `end`), each run in the
thread through an anyio blocking portal. What comes back is the lease's state, and the
verdict, which cancels the body's scope through the body's own loop (`Lease.stop_body`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Generic, TypeVar, TypeVarTuple

import anyio
import anyio.from_thread
import anyio.lowlevel

from ._errors import HeartbeatError
from ._loops import run_soon_on
from ._reporter import Lease, Reporter
from ._reporter._lease import Stage
from ._service import Outcome
from ._timing import LATENESS_FLOOR
from .instrumentation import Event, EventKind, Hook

T = TypeVar("T")
PosArgs = TypeVarTuple("PosArgs")

#: The job's loop is named blocked once it has not run for this long, seen from the thread.
BLOCKED_AFTER = LATENESS_FLOOR
#: How often the thread asks the job's loop to show that it runs.
PROBE_EVERY = BLOCKED_AFTER / 4


@dataclasses.dataclass(frozen=True, slots=True)
class _JobSide:
    """The job's loop, and the events on it by which the thread says how it is going."""

    loop: anyio.lowlevel.EventLoopToken
    ready: anyio.Event
    finished: anyio.Event

    def post(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the job's loop as soon as it runs (from any thread)."""
        run_soon_on(self.loop, fn)


@dataclasses.dataclass(frozen=True, slots=True)
class _ThreadSide:
    """What the thread made: the portal into its loop, its reporter, and what stops it."""

    portal: anyio.from_thread.BlockingPortal
    reporter: Reporter
    stop: anyio.Event


class ReportingThread:
    """Run a client's reporter on a thread of its own, with an event loop of its own, so
    that heartbeats keep their leases while job code blocks the job's event loop
    (``time.sleep``, a sync driver, a CPU-bound parse).

    Give it to `Heartbeat` (or `TaskRunner`) where they take a client. While the job's
    loop is blocked, reports go on schedule from the thread, and a verdict (a cancel, a
    task gone, a lease lost, a stall) is reached there at once: reporting stops, and the
    body is cancelled at its first await after the block, `TaskStopped` saying why.
    `Heartbeat.progress` and `Heartbeat.set_field` work from blocking code and from any
    thread. Hooks are called in the thread.

    ```python
    def make_client():
        return get_session().create_client("datapipeline", config=client_config())

    async with ReportingThread(make_client) as reporting:
        async with Heartbeat(reporting, task_id) as hb:
            parse_everything()  # sync code: the reports go on beside it
    ```

    A thread keeps running while pure-Python code holds the GIL (Python switches threads
    every 5 ms), but not while a C extension holds it without releasing it: see
    [Blocking code](../blocking-code.md).

    Args:
        make_client: Called once, in the thread, on its event loop (asyncio): returns an
            async context manager of a client, entered there and left as the thread ends
            (``lambda: get_session().create_client("datapipeline", config=client_config())``),
            or a client to use as it is, such as a `ThreadedClient`. An ``async def`` is
            awaited first.
        hooks: As for `Reporter`; they are called in the thread.
        random_source: As for `Reporter`.
        name: The thread's name.

    Raises:
        TypeError: ``make_client`` is not callable, or a hook is not.

    Entering starts the thread and returns once its client is made; it raises
    `HeartbeatError` if ``make_client`` failed (the thread has ended then). Leaving ends
    the thread's reports, its client and the thread itself; it raises `HeartbeatError`
    if heartbeats were still inside their blocks (their work is stopped with that error)
    or if the thread failed.
    """

    def __init__(
        self,
        make_client: Callable[[], Any],
        *,
        hooks: Iterable[Hook] = (),
        random_source: random.Random | None = None,
        name: str = "asyncheartbeat-reporting",
    ) -> None:
        if not callable(make_client):
            raise TypeError(
                f"make_client must be callable (it makes the client in the thread), got "
                f"{type(make_client).__name__}"
            )
        self._make_client = make_client
        self._hooks = tuple(hooks)
        for hook in self._hooks:
            if not callable(hook):
                raise TypeError(f"a hook must be callable, got {type(hook).__name__}")
        self._random = random_source
        self._name = name
        self._thread: threading.Thread | None = None
        self._job: _JobSide | None = None
        # Written by the thread; read by the job's side once the thread says it is ready.
        self._running: _ThreadSide | None = None
        self._failure: BaseException | None = None
        self._stopped_inside: list[str] = []
        #: When the job's loop last ran (the thread's clock), and whether it has been asked
        #: to show it again.
        self._job_loop_seen = 0.0
        self._probe_pending = False

    def __repr__(self) -> str:
        state = "running" if self._running is not None else "not running"
        return f"<ReportingThread {self._name!r} {state}>"

    @property
    def reporter(self) -> Reporter:
        """The thread's reporter (use it only from the thread: its hooks, for instance)."""
        return self._thread_side().reporter

    def _thread_side(self) -> _ThreadSide:
        if self._running is None:
            raise HeartbeatError("the ReportingThread is not running: enter it first")
        return self._running

    def clock(self) -> float:
        """The clock of the thread's event loop (asyncio's, ``time.monotonic``): readable
        from any thread, which is why progress() works from blocking code."""
        return time.monotonic()

    # -- entering and leaving ---------------------------------------------------------------

    async def __aenter__(self) -> ReportingThread:
        if self._thread is not None:
            raise RuntimeError("a ReportingThread can be entered only once: make one per use")
        job = self._job = _JobSide(anyio.lowlevel.current_token(), anyio.Event(), anyio.Event())
        self._job_loop_seen = self.clock()
        thread = self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        thread.start()
        # Shielded: a thread half started must be seen through to its end.
        with anyio.CancelScope(shield=True):
            await job.ready.wait()
            if self._running is None:
                await job.finished.wait()
                thread.join()
                raise HeartbeatError(
                    f"the ReportingThread could not make its client: {self._failure!r}"
                ) from self._failure
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        running, job, thread = self._thread_side(), self._job, self._thread
        assert job is not None
        assert thread is not None
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(RuntimeError):  # the thread has ended already
                running.portal.start_task_soon(running.stop.set)
            await job.finished.wait()
        thread.join()
        self._running = None
        if exc is not None:
            return  # the block's own exception (KeyboardInterrupt, SystemExit …) goes on
        if self._failure is not None:
            raise HeartbeatError("the ReportingThread failed") from self._failure
        if stopped := self._stopped_inside:
            raise HeartbeatError(
                f"the ReportingThread was left while {len(stopped)} heartbeats were still "
                f"inside their blocks (tasks {', '.join(map(repr, stopped))}): their work "
                f"was stopped, and they will not be reported"
            )

    def _run(self) -> None:
        """The thread: its event loop, until it is told to stop."""
        job = self._job
        assert job is not None
        try:
            anyio.run(self._serve, job, backend="asyncio")
        except BaseException as exc:  # handed to the job's side, which raises it
            self._failure = exc
        finally:
            job.post(job.ready.set)
            job.post(job.finished.set)

    async def _serve(self, job: _JobSide) -> None:
        made = self._make_client()
        if inspect.isawaitable(made):
            made = await made
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(made) if _is_context(made) else made
            reporter = Reporter(client, hooks=self._hooks, random_source=self._random)
            async with anyio.from_thread.BlockingPortal() as portal:
                running = self._running = _ThreadSide(portal, reporter, anyio.Event())
                job.post(job.ready.set)
                async with anyio.create_task_group() as group:
                    group.start_soon(self._watch_job_loop, job, running)
                    await running.stop.wait()
                    group.cancel_scope.cancel()
                # Before the portal waits for its calls: a beat() waiting in one ends now.
                self._stopped_inside = await reporter.close(
                    HeartbeatError("the ReportingThread was left while this heartbeat ran")
                )

    # -- the seam: what a heartbeat asks of its reporter, run in the thread ------------------

    async def start(self, lease: Lease) -> None:
        """As for `Reporter.start`, in the thread; the body's loop is the caller's.

        Args:
            lease: The task's lease, as the heartbeat made it.
        """
        lease.body_loop = anyio.lowlevel.current_token()
        await self._in_thread(self.reporter.start, lease)

    async def beat(self, lease: Lease) -> bool:
        """As for `Reporter.beat`, in the thread.

        Args:
            lease: The task's lease.

        Returns:
            Whether a report carrying the fields was answered.
        """
        return await self._in_thread(self.reporter.beat, lease)

    async def end(self, lease: Lease, *, report_last: bool) -> None:
        """As for `Reporter.end`, in the thread; nothing to do if the thread ended it.

        Args:
            lease: The task's lease.
            report_last: Send one last report first.
        """
        if lease.stage is Stage.CLOSED:
            return
        end = functools.partial(self.reporter.end, report_last=report_last)
        try:
            await self._in_thread(end, lease)
        except HeartbeatError as exc:  # the thread is gone, and with it the lease
            lease.stage = Stage.CLOSED
            if lease.crash is None:
                lease.crash = exc

    def start_in_thread(
        self, fn: Callable[[*PosArgs], Awaitable[T]], *args: *PosArgs
    ) -> InThread[T]:
        """Start ``fn(*args)`` in the thread, not waiting for it (a `TaskRunner` watches its
        stalled tasks there); its result is awaited on the caller's loop.

        Args:
            fn: An async function, run on the thread's loop.
            *args: Its positional arguments.

        Returns:
            What ``await ...result()`` gives ``fn``'s result by, on the caller's loop.

        Raises:
            HeartbeatError: The thread is not running.
        """
        loop = anyio.lowlevel.current_token()
        try:
            future = self._thread_side().portal.start_task_soon(fn, *args)
        except RuntimeError as exc:
            raise HeartbeatError("the ReportingThread has ended") from exc
        return InThread(loop, future)

    @property
    def calls(self) -> CallsInThread:
        """The reporter's calls, made in the thread (a `TaskRunner`'s polls and statuses)."""
        return CallsInThread(self)

    async def _in_thread(self, fn: Callable[[*PosArgs], Awaitable[T]], *args: *PosArgs) -> T:
        portal = self._thread_side().portal
        try:
            return await portal.call_async(fn, *args)
        except RuntimeError as exc:
            if "not running" not in str(exc):
                raise
            raise HeartbeatError("the ReportingThread has ended") from exc

    # -- the job's loop, seen from the thread ---------------------------------------------------

    def _job_loop_ran(self) -> None:
        self._job_loop_seen = self.clock()
        self._probe_pending = False

    async def _watch_job_loop(self, job: _JobSide, running: _ThreadSide) -> None:
        """Name a blocked job loop once per block, while heartbeats depend on it; end the
        thread if the main thread has ended without leaving it."""
        reporter = running.reporter
        warned = False
        while threading.main_thread().is_alive():
            await anyio.sleep(PROBE_EVERY)
            if not self._probe_pending:
                self._probe_pending = True
                job.post(self._job_loop_ran)
            blocked_for = self.clock() - self._job_loop_seen
            if blocked_for < BLOCKED_AFTER:
                warned = False
            elif not warned and (held := reporter.held()):
                warned = True
                reporter.calls.emit(
                    Event(
                        EventKind.LOOP_BLOCKED, reporter.calls.service.renew_operation,
                        delay=blocked_for, description=f"the reports of {len(held)} "
                        f"heartbeats go on from the thread; their bodies are stopped, if "
                        f"need be, at their first await",
                    )
                )  # fmt: skip
        running.stop.set()


class InThread(Generic[T]):
    """A coroutine running in a reporting thread; its result awaited on another loop."""

    def __init__(self, loop: anyio.lowlevel.EventLoopToken, future: Future[T]) -> None:
        self._future = future
        self._done = anyio.Event()
        future.add_done_callback(lambda _: run_soon_on(loop, self._done.set))

    async def result(self) -> T:
        await self._done.wait()
        return self._future.result()


@dataclasses.dataclass(frozen=True, slots=True)
class CallsInThread:
    """`Calls.call` and `Calls.long_call` of a reporting thread's reporter, run in the
    thread; their deadlines are read on the thread's clock (`ReportingThread.clock`)."""

    thread: ReportingThread

    async def call(self, operation: str, params: Mapping[str, Any], **options: Any) -> Outcome:
        call = functools.partial(self.thread.reporter.calls.call, **options)
        return await self.thread._in_thread(call, operation, params)

    async def long_call(self, operation: str, params: Mapping[str, Any]) -> Outcome:
        return await self.thread._in_thread(self.thread.reporter.calls.long_call, operation, params)


def _is_context(made: object) -> bool:
    return callable(getattr(made, "__aenter__", None)) and callable(
        getattr(made, "__aexit__", None)
    )
