"""One task's lease, as a heartbeat hands it to its reporter: the seam between the two.

The body's side (`Heartbeat`) writes only ``fields`` (a snapshot, replaced whole) and
``last_progress``, and reads what the reporter wrote; the reporter's side writes the rest,
and stops the body with the verdict (`Lease.stop_body`). Nothing else crosses. Each of
those is one value replaced whole, so the two sides may run on different threads
(`ReportingThread`).
"""

from __future__ import annotations

import enum
import functools
import math
from typing import Protocol

import anyio
import anyio.lowlevel

from asyncheartbeat._errors import CancelReason, TaskStopped
from asyncheartbeat._loops import run_soon_on
from asyncheartbeat._service import Final, Outcome
from asyncheartbeat._timing import Timing

#: A snapshot of the fields: their version (it changes whenever they do) and the API's shape.
FieldsSnapshot = tuple[int, list[dict[str, str]]]


class Stage(enum.Enum):
    NEW = "new"
    ACKNOWLEDGING = "acknowledging"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


class Lease:
    """A task's lease and everything the reporter keeps of it."""

    __slots__ = (
        "answered_version",
        "attempts_started",
        "beat_wanted_by",
        "beats",
        "body_done",
        "body_loop",
        "body_scope",
        "changed",
        "crash",
        "fields",
        "hedge_scopes",
        "hedge_timer",
        "hedged",
        "in_flight",
        "last_answered_attempt",
        "last_progress",
        "last_success",
        "primary",
        "report_period",
        "report_scope",
        "report_timer",
        "round_trip",
        "stage",
        "stall_timer",
        "task_id",
        "tasks",
        "timing",
        "verdict",
        "waiting_hedge",
    )

    def __init__(self, task_id: str, timing: Timing, fields: FieldsSnapshot) -> None:
        self.task_id = task_id
        self.timing = timing
        # -- written by the body's side --
        self.fields = fields
        #: When the body last progressed (the stall watchdog's clock); set as the body starts.
        self.last_progress = 0.0
        #: The event loop the body runs on, when it is not the reporter's (set before
        #: `start`): the body's scope is then cancelled through it.
        self.body_loop: anyio.lowlevel.EventLoopToken | None = None
        #: The body's work is over and a status says how it ended (a `TaskRunner`'s): the
        #: reports go on to hold the lease until it lands, but nothing can stall any more,
        #: and no last report is sent.
        self.body_done = False
        # -- written by the reporter --
        #: The attempt number the most demanding beat() waits for.
        self.beat_wanted_by = 0
        self.stage = Stage.NEW
        self.body_scope = anyio.CancelScope()
        #: Why the work was stopped (a `Final`), or None while it goes on.
        self.verdict: Final | None = None
        #: A programming error met in the background, raised by the heartbeat as it ends.
        self.crash: BaseException | None = None
        self.beats = 0
        #: The spacing of its regular reports now: the interval, or longer while paced.
        self.report_period = timing.interval
        self.last_success: float | None = None
        #: How long the last answered report took, from sending to its answer.
        self.round_trip = 0.0
        #: Set (and replaced) whenever a report is answered or a verdict is reached.
        self.changed: anyio.Event | None = None
        # Attempts are numbered so that beat() can tell which report will carry its request.
        self.attempts_started = 0
        self.last_answered_attempt = 0
        self.answered_version = -1
        self.in_flight: tuple[int, int] | None = None  # (attempt, fields version)
        # The report attempt in flight that a second attempt may stand beside (its cancel
        # scope and when it was sent), the whole report's scope, the second attempts in
        # flight (their scopes, and when each was sent), the one waiting for its turn, and
        # a second attempt's decisive outcome that came first.
        self.primary: tuple[anyio.CancelScope, float] | None = None
        self.report_scope: anyio.CancelScope | None = None
        self.hedge_scopes: dict[anyio.CancelScope, float] = {}
        self.waiting_hedge: anyio.CancelScope | None = None
        self.hedged: Outcome | None = None
        # The reporter's timers for this lease: the order number of the pending entry of
        # each kind in its schedule, 0 for none.
        self.report_timer = self.hedge_timer = self.stall_timer = 0
        #: The reporter's tasks working for this lease now.
        self.tasks = 0

    def lease_end(self) -> float:
        """When the lease bought by the last answered report runs out."""
        last = self.last_success
        return (-math.inf if last is None else last) + self.timing.lease_timeout

    def ran_out(self, now: float) -> bool:
        """Whether the lease ran out by ``now`` with no verdict to say so: the body blocked
        the loop past it, so none could reach it, and the task is probably someone else's."""
        return self.verdict is None and now >= self.lease_end()

    def share_left(self, now: float) -> float | None:
        """The share of its lease (0 to 1, below 0 once lost) left at ``now``; None before
        the first answered report."""
        if self.last_success is None:
            return None
        return (self.lease_end() - now) / self.timing.lease_timeout

    def stopped(self) -> TaskStopped:
        """The `TaskStopped` that says why the work was stopped."""
        assert self.verdict is not None
        return TaskStopped(self.task_id, self.verdict.reason, self.verdict.description)

    @property
    def cancel_reason(self) -> CancelReason | None:
        return self.verdict.reason if self.verdict is not None else None

    def stop_body(self, reason: str) -> None:
        """Cancel the body's scope, on the body's own event loop: a body on another thread's
        loop is stopped at its first await once that loop runs again."""
        loop = self.body_loop
        if loop is None:
            self.body_scope.cancel(reason=reason)
            return
        run_soon_on(loop, functools.partial(self.body_scope.cancel, reason=reason))

    def wake(self) -> None:
        """Tell whoever waits on the lease (beat(), the end) that something changed."""
        if self.changed is not None:
            self.changed.set()
            self.changed = None

    async def wait_for_change(self) -> None:
        if self.changed is None:
            self.changed = anyio.Event()
        await self.changed.wait()


class LeaseReporter(Protocol):
    """What a heartbeat asks of whoever keeps its lease: a `Reporter` on the heartbeat's own
    loop, or a `ReportingThread`."""

    def clock(self) -> float:
        """The clock the lease's times are read on; `Heartbeat.progress` notes the time on it."""
        ...

    async def start(self, lease: Lease) -> None: ...

    async def beat(self, lease: Lease) -> bool: ...

    async def end(self, lease: Lease, *, report_last: bool) -> None: ...
