"""The rate a client allows itself for one operation, learned from ThrottlingException.

Data Pipeline limits each operation's calls per account (ReportTaskProgress: 10/s with a
burst of 100). When heartbeats ask for more, retrying each throttled call on its own only
adds load: every heartbeat backs off alone, and the service sees more calls, not fewer. So
a throttled answer slows the whole client for that operation instead:

- The first throttle sets the rate to what the service accepted over the last second (or,
  with no answer in it, half of what the client asks for); each further throttle, at most
  one per `DECREASE_EVERY_TURNS` turns, sets it to what the service accepted in the last
  second, or takes `DECREASE_FACTOR` off, whichever is lower. It never goes
  below the floor its caller gives: for reports, what keeps every lease (a rate below it
  would lose leases for certain, while a few more throttled answers only cost a turn).
- Each answered call adds back a little (`INCREASE_SHARE` of the rate per second at that
  rate), so the client finds the service's limit again, from below.
- Calls wait their turn, spaced evenly at that rate, the most urgent (earliest lease end)
  first. A throttled call is not a failure: it waits for its turn again (at the back of the
  line once throttled three times in a row, so that calls a service throttles again and again
  cannot take every turn from the others, unless waiting there would outlast the call's
  deadline).
- After `FORGET_AFTER` seconds without a throttle, the limit is dropped.
"""

from __future__ import annotations

import math

from asyncheartbeat._clock import current_time

from ._queue import TurnQueue

#: A throttle leaves at least this rate, in calls/s.
MIN_RATE = 0.1
#: After a decrease, the next one waits for this many turns at the new rate (or a second, if
#: shorter): a burst of throttles answered together is one signal, not many.
DECREASE_EVERY_TURNS = 10
DECREASE_FACTOR = 0.85
#: Per answered call, the rate grows by this share of one call/s: about 5 % per second.
INCREASE_SHARE = 0.05
FORGET_AFTER = 300.0
#: The longest wait a throttled answer's ``x-amz-retry-after`` may ask for: a service that
#: asks for more is still tried again by then, as the lease may need it.
MAX_RETRY_AFTER = 10.0
#: A call goes to the back of the line only if this many times the wait there fits before
#: its deadline.
BACK_OF_LINE_MARGIN = 2.0


class OperationRate:
    """One operation's calls: how fast the client sends them, and how fast it may."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        #: Calls/s this client allows itself; None while the service has not throttled it.
        self.rate: float | None = None
        self.queue = TurnQueue()
        self._next_free = -math.inf
        self._last_throttle = -math.inf
        self._last_decrease = -math.inf
        # Answered calls counted per second: what the service accepts.
        self._second_start = -math.inf
        self._answered_this_second = 0
        self._answered_last_second = 0

    async def pace(self, deadline: float, *, back_of_line: bool = False) -> bool:
        """Wait for this operation's next turn (behind everyone waiting now, with
        ``back_of_line``); False if ``deadline`` passes first."""
        if self.rate is None:
            return True
        if current_time() - self._last_throttle > FORGET_AFTER:
            self.rate = None
            return True

        if back_of_line:
            # Behind everyone only while that wait fits before the deadline twice over (the
            # rate may still be falling): yielding turns must not cost this call its lease.
            wait = (len(self.queue) + 1) / self.rate
            back_of_line = current_time() + BACK_OF_LINE_MARGIN * wait < deadline

        def seconds_until_free(now: float) -> float:
            return max(0.0, self._next_free - now)

        if not await self.queue.wait_turn(deadline, seconds_until_free, last_in_line=back_of_line):
            return False
        if self.rate is not None:  # None: forgotten while this call waited
            self._next_free = max(current_time(), self._next_free) + 1 / self.rate
        return True

    def throttled(
        self, sending: float, floor: float = MIN_RATE, retry_after: float | None = None
    ) -> float:
        """The service throttled a call while the client was ``sending`` calls/s: slow down,
        no lower than ``floor`` calls/s, and return the new rate. The throttled call's next
        turn is one step away, or ``retry_after`` seconds if the service said so (at most
        `MAX_RETRY_AFTER`)."""
        now = current_time()
        self._roll(now)
        floor = max(MIN_RATE, floor)
        accepted = self._answered_last_second or None
        if self.rate is None:
            self.rate = max(floor, accepted or sending / 2)
            self._last_decrease = now
        elif now - self._last_decrease >= min(1.0, DECREASE_EVERY_TURNS / self.rate):
            self.rate = max(floor, min(self.rate * DECREASE_FACTOR, accepted or math.inf))
            self._last_decrease = now
        self._last_throttle = now
        wait = max(1 / self.rate, min(retry_after or 0.0, MAX_RETRY_AFTER))
        self._next_free = max(self._next_free, now + wait)
        return self.rate

    def answered(self, now: float) -> None:
        self._roll(now)
        self._answered_this_second += 1
        if self.rate is not None:
            self.rate += INCREASE_SHARE

    def _roll(self, now: float) -> None:
        elapsed = now - self._second_start
        if elapsed >= 1:
            self._answered_last_second = self._answered_this_second if elapsed < 2 else 0
            self._answered_this_second = 0
            self._second_start = now
