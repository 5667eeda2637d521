"""The rate a client allows itself for one operation, learned from ThrottlingException.

Data Pipeline limits each operation's calls per account (ReportTaskProgress: 10/s with a
burst of 100), and every client of the account draws on the same bucket without seeing the
others. When they ask for more, retrying each throttled call on its own only adds load. So
a throttled answer slows the whole client for that operation, and each client finds its
share of the account by additive increase, multiplicative decrease (as botocore's adaptive
mode and TCP do), without talking to the others:

- Decrease. The first throttle sets the rate to the caller's floor when it gives one
  (``from_floor``: for reports, what keeps every lease, `LEASE_MARGIN` times one report per
  lease each), else to what the service accepted over the last second (or half of what the
  client asks for). Each further throttle, at most one per `DECREASE_EVERY_TURNS` turns
  (or a second), sets it to what the service accepted in the last second, or takes
  `DECREASE_FACTOR` off, whichever is lower, never below the floor: a rate below it would
  lose leases for certain, while a few more throttled answers only cost a turn. A fleet
  whose floors add up to more than the account allows is too big for it: it stays
  throttled, and the overload WARNING and the lease-margin metric say so.
- Increase. Each answered call adds `INCREASE_SHARE` calls/s, while the client asks for
  more than its rate (its reports are paced, `paced_interval`): so the rate climbs back
  towards the service's limit from below, in proportion to what the client sends, and it
  does not climb past what the client asks for, where it would hold nothing back and
  would let a later surge go unpaced.
- Calls wait their turn, spaced evenly at that rate, the most urgent (earliest deadline)
  first. A call whose deadline is `URGENT_TURNS` turns (plus two answer times) away goes
  at once, whatever the rate: the client's own pacing must never be what loses a lease.
- A throttled call is not a failure: it waits for its turn again, and at least as long as
  the answer's ``x-amz-retry-after`` says (up to `MAX_RETRY_AFTER`). Throttled three times
  in a row, it waits at the back of the line, so that calls a service throttles again and
  again cannot take every turn from the others, unless waiting there would outlast the
  call's deadline.
- After `FORGET_AFTER` seconds without a throttle, the limit is dropped.
"""

from __future__ import annotations

import math

import anyio

from asyncheartbeat._clock import current_time

from ._queue import TurnQueue

#: A throttle leaves at least this rate, in calls/s.
MIN_RATE = 0.1
#: After a decrease, the next one waits for this many turns at the new rate (or a second, if
#: shorter): a burst of throttles answered together is one signal, not many.
DECREASE_EVERY_TURNS = 10
DECREASE_FACTOR = 0.85
#: Per answered call, the rate grows by this many calls/s: half a percent a second at the
#: rate it sends. Slow, so that a fleet of clients growing together overshoots the account
#: little: 16 clients at capacity ÷ need 1.25 for 150 s of virtual time (as in
#: tests/test_fleet.py) had 0.32 throttled answers per answered report with 0.02, 0.17 with
#: 0.005. Slow growth costs no lease, only reports spaced further apart for longer.
INCREASE_SHARE = 0.005
FORGET_AFTER = 300.0
#: The longest wait a throttled answer's ``x-amz-retry-after`` may ask for: a service that
#: asks for more is still tried again by then, as the lease may need it.
MAX_RETRY_AFTER = 10.0
#: A call goes to the back of the line only if this many times the wait there fits before
#: its deadline.
BACK_OF_LINE_MARGIN = 2.0
#: A call whose deadline is this many turns away (plus two answer times) goes whatever the
#: rate: enough for one more throttled answer and its retry.
URGENT_TURNS = 3.0
URGENT_ANSWERS = 2.0
#: An urgent call throttled again waits at most this share of the time it has left: each
#: wait shorter than the last, it gets several more tries before its deadline.
URGENT_SHARE = 0.25


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

    async def pace(
        self,
        deadline: float,
        *,
        back_of_line: bool = False,
        not_before: float = -math.inf,
        answer_takes: float = 0.0,
    ) -> bool:
        """Wait for this operation's next turn (behind everyone waiting now, with
        ``back_of_line``), and not before ``not_before``; False if ``deadline`` passes
        first. A call whose answer, taking ``answer_takes``, would come too close to its
        deadline goes at once."""
        if not_before > current_time():
            await anyio.sleep_until(min(not_before, deadline))
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

        if not await self.queue.wait_turn(
            deadline, seconds_until_free, last_in_line=back_of_line,
            until=self.urgent_at(deadline, answer_takes),
        ) and current_time() >= deadline:  # fmt: skip
            return False
        if self.rate is not None:  # None: forgotten while this call waited
            self._next_free = max(current_time(), self._next_free) + 1 / self.rate
        return True

    def throttled(
        self,
        sending: float,
        floor: float = MIN_RATE,
        retry_after: float | None = None,
        *,
        from_floor: bool = False,
    ) -> float:
        """The service throttled a call while the client was ``sending`` calls/s: slow down,
        no lower than ``floor`` calls/s (to it at once, the first time, ``from_floor``),
        and return the new rate. The next turn is `retry_wait` away."""
        now = current_time()
        self._roll(now)
        floor = max(MIN_RATE, floor)
        accepted = self._answered_last_second or None
        if self.rate is None:
            self.rate = floor if from_floor else max(floor, accepted or sending / 2)
            self._last_decrease = now
        elif now - self._last_decrease >= min(1.0, DECREASE_EVERY_TURNS / self.rate):
            self.rate = max(floor, min(self.rate * DECREASE_FACTOR, accepted or math.inf))
            self._last_decrease = now
        self._last_throttle = now
        self._next_free = max(self._next_free, now + self.retry_wait(retry_after))
        return self.rate

    def urgent_at(self, deadline: float, answer_takes: float) -> float:
        """From when a call with ``deadline`` goes whatever the rate: `URGENT_TURNS` turns
        and `URGENT_ANSWERS` answer times (``answer_takes`` each) before it."""
        turns = URGENT_TURNS / self.rate if self.rate is not None else 0.0
        return deadline - turns - URGENT_ANSWERS * answer_takes

    def retry_wait(
        self,
        retry_after: float | None,
        *,
        time_left: float = math.inf,
        urgent: bool = False,
        jitter: float = 0.5,
    ) -> float:
        """How long a throttled call waits before it goes again: a turn, spread by
        ``jitter`` (0 to 1: from half a turn to one and a half), so that clients throttled
        together do not come back in the same instant; at least what the service's
        ``x-amz-retry-after`` said (at most `MAX_RETRY_AFTER`). An ``urgent`` call waits
        just what the service said, or, when it said nothing, a quarter turn and no more
        than `URGENT_SHARE` of its ``time_left``, so that it still has tries left before
        its deadline.

        Across a fleet this is how the leases about to run out go first: the clients do not
        see each other's calls, but a call near its lease's end asks again sooner, and the
        service's tokens go to whoever asks when they come.
        """
        said = min(retry_after, MAX_RETRY_AFTER) if retry_after is not None else None
        turn = 1 / self.rate if self.rate is not None else 0.0
        if urgent:
            if said is not None:
                return said
            turn = min(turn / 4, URGENT_SHARE * max(0.0, time_left))
        return max(turn * (0.5 + jitter), said or 0.0)

    def answered(self, now: float, asked: float | None = None) -> None:
        """A call was answered at ``now``; ``asked``: the calls/s the client asks for, if
        known (the rate grows only while it holds them back)."""
        self._roll(now)
        self._answered_this_second += 1
        if self.rate is not None and (asked is None or asked > self.rate):
            self.rate += INCREASE_SHARE

    def _roll(self, now: float) -> None:
        elapsed = now - self._second_start
        if elapsed >= 1:
            self._answered_last_second = self._answered_this_second if elapsed < 2 else 0
            self._answered_this_second = 0
            self._second_start = now
