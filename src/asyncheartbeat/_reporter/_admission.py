"""How many calls a client has on the wire at once: a limit learned from what completes.

A client's capacity is not its pool size. On a busy event loop, every call beyond what the
loop can process only makes all of them slower; on a slow service, many calls must be in
flight to keep up. So the limit is learned as it runs (additive increase, multiplicative
decrease, as TCP's window):

- It starts at 1: a fresh client's first call builds aiobotocore's HTTP session (tens of ms
  of CPU), alone, so that no other call waits on it from inside the client. Its answer, or
  `FIRST_CALL_ALONE` seconds, whichever comes first, opens the limit to `MIN_LIMIT` (or the
  pool, if smaller): a slow service's first answer does not hold the others back.
- It grows while it is what holds calls back: by one per answered call until the first sign
  of congestion (slow start), then by one per window of answered calls; and, while the loop
  has not lagged for a second, by one for each call that would otherwise wait: on an idle
  loop (a slow service), nothing is gained by holding calls back.
- A call whose answer would come too late if it waited longer (its deadline is
  `URGENT_ANSWERS` answer times away, as answers have shown them) goes beyond the limit,
  if the pool has a connection free.
- It shrinks by a quarter, at most once per `DECREASE_EVERY`, when the event loop is seen to
  lag: a heartbeat woken for its report runs more than `LOOP_LAG_LIMIT` late. A slow
  *service* does not shrink it: its latency says nothing about how much the client can
  carry, and cutting concurrency would starve it.
- It never exceeds the client's connection pool, less the connections long polls hold, so
  that no call waits inside aiohttp's pool, where the line cannot be ordered by urgency.

Calls that find the limit reached wait in a `TurnQueue`: the one whose deadline (its lease)
ends first goes first.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from asyncheartbeat._clock import current_time

from ._queue import TurnQueue

#: How long an answer typically takes, in seconds, or None while it is not known.
AnswerTime = Callable[[], float | None]

#: aiobotocore's default ``max_pool_connections``, for a client that does not say.
DEFAULT_POOL = 10
#: The limit never falls below this (or the pool, if smaller): a loop that lags from other
#: work still needs calls in flight to make any progress.
MIN_LIMIT = 16
#: A fresh client's first call goes alone this long at most (building aiobotocore's session
#: takes tens of ms of CPU), and no longer than a quarter of the time a waiting call has
#: left; then the others go too, without waiting for its answer.
FIRST_CALL_ALONE = 0.5
#: A waiting call is urgent once its deadline is this many answer times away: its answer
#: may take twice as long as answers have, and still count.
URGENT_ANSWERS = 2.0
#: Below this many seconds to its deadline, a call waiting without a known answer time no
#: longer looks again whether it is urgent.
URGENCY_RECHECK = 0.01
#: Loop lag above this is congestion.
LOOP_LAG_LIMIT = 0.1
#: At most one decrease per this many seconds: one lagging burst is one signal.
DECREASE_EVERY = 1.0
DECREASE_FACTOR = 0.75


class Admission:
    """The client's calls in flight, against a limit learned as they complete."""

    def __init__(self, pool: int | None) -> None:
        self.pool = pool or DEFAULT_POOL
        #: The limit on short calls in flight (a float, so that it can grow by fractions).
        self.limit = 1.0
        #: Short calls in flight now.
        self.in_flight = 0
        #: Connections held by long polls.
        self.long_calls = 0
        self.queue = TurnQueue(on_unused=self.leave)
        self._slow_start = True
        self._warm = False
        self._first_sent_at: float | None = None
        self._last_decrease = self._last_lag = -math.inf

    @property
    def capacity(self) -> int:
        """How many short calls may be in flight now."""
        return max(1, min(int(self.limit), self.pool - self.long_calls))

    def spare(self) -> bool:
        """Whether a call could go now without making another wait."""
        return self.in_flight < self.capacity and self.queue.empty()

    async def enter(self, deadline: float, *, answer_takes: AnswerTime | None = None) -> bool:
        """Take a place on the wire before ``deadline``; False if none came free in time.

        The limit grows at once when calls wait and the loop has not lagged for a second:
        on an idle loop nothing is gained by holding calls back. A call still waiting when
        its deadline is `URGENT_ANSWERS` answer times away goes beyond the limit, if the
        pool has a connection free: the limit keeps a busy loop from slowing every call,
        but a lost lease costs more than one call too many. ``answer_takes`` tells how long
        an answer takes (None while no answer has shown it).
        """
        if self._take_if_free():
            return True
        if not self._warm and self._first_sent_at is not None:
            # The first call builds the session; after that, a slow first *answer* must not
            # hold the others back for a whole round trip.
            # ...nor for more than a quarter of the time a waiting call has left.
            now = current_time()
            alone_until = min(self._first_sent_at + FIRST_CALL_ALONE, now + (deadline - now) / 4)
            if await self.queue.wait_turn(deadline, until=alone_until):
                return True
            self.first_answer()
            if self._take_if_free():
                return True
        return await self._wait(deadline, answer_takes)

    def _take_if_free(self) -> bool:
        if self.in_flight >= self.capacity or not self.queue.empty():
            return False
        if self._first_sent_at is None:
            self._first_sent_at = current_time()
        self.in_flight += 1
        return True

    async def _wait(self, deadline: float, answer_takes: AnswerTime | None) -> bool:
        if self.queue.empty() and self._grow_on_demand():
            self.in_flight += 1
            return True

        def urgent_at() -> float | None:
            typical = answer_takes() if answer_takes is not None else None
            return None if typical is None else deadline - URGENT_ANSWERS * typical

        while answer_takes is not None:
            now = current_time()
            if (check_at := urgent_at()) is None:
                if deadline - now <= URGENCY_RECHECK:
                    break
                # How long answers take is not known yet: look again halfway there.
                check_at = now + (deadline - now) / 2
            if await self.queue.wait_turn(deadline, until=check_at):
                return True
            now = current_time()
            if now >= deadline:
                return False
            if (urgent := urgent_at()) is not None and now >= urgent:
                if self.in_flight < self.pool - self.long_calls:
                    self.in_flight += 1
                    return True
                break
        return await self.queue.wait_turn(deadline)

    def leave(self, *, answered: bool = False) -> None:
        """A short call ended; ``answered`` if the service answered it."""
        was_full = self.in_flight >= self.capacity
        self.in_flight -= 1
        if answered and was_full and self.limit < self.pool:
            self.limit = min(self.pool, self.limit + (1 if self._slow_start else 1 / self.limit))
        self._hand_over()

    def long_call(self, *, started: bool) -> None:
        """A long poll took one of the pool's connections, or gave it back."""
        self.long_calls += 1 if started else -1
        self._hand_over()

    def _hand_over(self) -> None:
        """Give every place free now (or grown on demand) to the callers waiting, the most
        urgent first."""
        while not self.queue.empty() and (self.in_flight < self.capacity or self._grow_on_demand()):
            self.queue.hand_over()
            self.in_flight += 1

    def _grow_on_demand(self) -> bool:
        """Raise the limit by one for a call that would wait, if the client is warm and the
        loop has not lagged for a second; True if that made room for it."""
        if not self._warm or self.limit >= self.pool:
            return False
        if current_time() - self._last_lag < DECREASE_EVERY:
            return False
        self.limit += 1
        return self.in_flight < self.capacity

    def session_built(self) -> bool:
        """Whether the client is warm: answered once, or its first call has been out for
        `FIRST_CALL_ALONE` (its session is built by then), which opens the limit too."""
        first = self._first_sent_at
        if not self._warm and first is not None and current_time() >= first + FIRST_CALL_ALONE:
            self.first_answer()
        return self._warm

    def first_answer(self) -> None:
        """The client is warm: open up to the floor at once, and grow from there."""
        self._warm = True
        self.limit = max(self.limit, min(self.pool, MIN_LIMIT))
        self._hand_over()

    def loop_lag(self, lag: float, now: float) -> None:
        """The event loop ran something at ``now``, ``lag`` seconds after it was due."""
        if lag <= LOOP_LAG_LIMIT:
            return
        self._last_lag = now
        if now - self._last_decrease < DECREASE_EVERY:
            return
        self._last_decrease = now
        self._slow_start = False
        self.limit = max(min(MIN_LIMIT, self.pool), self.limit * DECREASE_FACTOR)
