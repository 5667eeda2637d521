"""Every timer of a client's leases in one heap, served by one task.

A heartbeat sleeping between reports is an entry here, not a sleeping task: a timer is
an order number kept on its lease, and an entry whose number is no longer there is stale
and skipped (cheaper than removing it from the heap).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math

import anyio

from asyncheartbeat._clock import current_time

from ._lease import Lease


class Timer(enum.Enum):
    #: A scheduled report is due.
    REPORT = "report"
    #: beat() asked for a report now.
    BEAT = "beat"
    #: A report in flight may deserve a second attempt beside it.
    HEDGE = "hedge"
    #: The body may have stalled.
    STALL = "stall"


_SLOT = {
    Timer.REPORT: "report_timer",
    Timer.BEAT: "report_timer",
    Timer.HEDGE: "hedge_timer",
    Timer.STALL: "stall_timer",
}


class Schedule:
    """The timers of one client's leases, earliest first."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Lease, Timer]] = []
        self._order = itertools.count(1)
        self._sleep: anyio.CancelScope | None = None
        self._sleeping_until = math.inf

    def set(self, lease: Lease, timer: Timer, at: float) -> None:
        """Arm ``lease``'s ``timer`` for ``at``, replacing the one of its slot."""
        order = next(self._order)
        setattr(lease, _SLOT[timer], order)
        heapq.heappush(self._heap, (at, order, lease, timer))
        if at < self._sleeping_until:
            self.wake()

    @staticmethod
    def clear(lease: Lease) -> None:
        lease.report_timer = lease.hedge_timer = lease.stall_timer = 0

    def due(self, now: float) -> list[tuple[float, Lease, Timer]]:
        """Take every live timer due at ``now``."""
        heap = self._heap
        due: list[tuple[float, Lease, Timer]] = []
        while heap and heap[0][0] <= now:
            at, order, lease, timer = heapq.heappop(heap)
            slot = _SLOT[timer]
            if getattr(lease, slot) == order:
                setattr(lease, slot, 0)
                due.append((at, lease, timer))
        return due

    async def sleep(self) -> None:
        """Sleep until the next timer is due, or `wake` is called."""
        heap = self._heap
        until = heap[0][0] if heap else math.inf
        self._sleeping_until = until
        # A plain sleep, cancelled to wake early: a deadline on the scope would wake it by
        # cancellation, costing an exception every time.
        with anyio.CancelScope() as self._sleep:
            if until == math.inf:
                await anyio.sleep_forever()
            else:
                await anyio.sleep(max(0.0, until - current_time()))
        self._sleep = None
        self._sleeping_until = math.inf

    def wake(self) -> None:
        if self._sleep is not None:
            self._sleep.cancel()
            self._sleep = None
