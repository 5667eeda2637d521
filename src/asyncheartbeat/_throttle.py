"""The rate a client allows itself for one operation, learned from ThrottlingException.

Data Pipeline limits each operation's calls per account (ReportTaskProgress: 10/s with a
burst of 100). When heartbeats ask for more, retrying each throttled call on its own only
adds load: every heartbeat backs off alone, and the service sees more calls, not fewer. So
a throttled answer slows the whole client for that operation instead:

- The first throttle sets the rate to half of what the client was sending; each further one
  (at most one per `DECREASE_EVERY`) takes another `DECREASE_FACTOR` off. It never goes
  below the floor its caller gives: for reports, what keeps every lease (a rate below it
  would lose leases for certain, while a few more throttled answers only cost a turn).
- Each answered call adds back a little (`INCREASE_SHARE` of the rate per second at that
  rate), so the client finds the service's limit again, from below.
- Calls wait their turn, spaced evenly at that rate, the most urgent (earliest lease end)
  first. A throttled call is not a failure: it waits for its turn again, at the back of the
  line, so that calls throttled again and again cannot take every turn from the others.
- After `FORGET_AFTER` seconds without a throttle, the limit is dropped.
"""

from __future__ import annotations

import math

import anyio

from ._queue import TurnQueue

#: A throttle leaves at least this rate, in calls/s.
MIN_RATE = 0.1
DECREASE_EVERY = 1.0
DECREASE_FACTOR = 0.85
#: Per answered call, the rate grows by this share of one call/s: about 5 % per second.
INCREASE_SHARE = 0.05
FORGET_AFTER = 300.0


class OperationRate:
    """One operation's calls: how fast the client sends them, and how fast it may."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        #: Calls/s this client allows itself; None while the service has not throttled it.
        self.rate: float | None = None
        self.queue = TurnQueue()
        self._next_free = -math.inf
        self._last_throttle = -math.inf

    async def pace(self, deadline: float, *, throttled_before: bool = False) -> bool:
        """Wait for this operation's next turn (at the back of the line, if the call was
        ``throttled_before``); False if ``deadline`` passes first."""
        now = anyio.current_time()
        if self.rate is not None and now - self._last_throttle > FORGET_AFTER:
            self.rate = None
        if self.rate is None:
            return True

        def seconds_until_free(now: float) -> float:
            return max(0.0, self._next_free - now)

        if not await self.queue.wait_turn(
            deadline, seconds_until_free, last_in_line=throttled_before
        ):
            return False
        if self.rate is not None:  # None: forgotten while this call waited
            self._next_free = max(anyio.current_time(), self._next_free) + 1 / self.rate
        return True

    def throttled(self, sending: float, floor: float = MIN_RATE) -> float:
        """The service throttled a call while the client was ``sending`` calls/s: slow down,
        no lower than ``floor`` calls/s, and return the new rate. The throttled call's next
        turn is one step away."""
        now = anyio.current_time()
        floor = max(MIN_RATE, floor)
        if self.rate is None:
            self.rate = max(floor, sending / 2)
        elif now - self._last_throttle >= DECREASE_EVERY:
            self.rate = max(floor, self.rate * DECREASE_FACTOR)
        self._last_throttle = now
        self._next_free = max(self._next_free, now + 1 / self.rate)
        return self.rate

    def answered(self) -> None:
        if self.rate is not None:
            self.rate += INCREASE_SHARE
