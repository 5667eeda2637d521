"""How many calls a client has on the wire at once: a limit learned from what completes.

A client's capacity is not its pool size. On a busy event loop, every call beyond what the
loop can process only makes all of them slower; on a slow service, many calls must be in
flight to keep up. So the limit is learned as it runs (additive increase, multiplicative
decrease, as TCP's window):

- It starts at 1: a fresh client's first call builds aiobotocore's HTTP session (tens of ms
  of CPU), alone, so that no other call waits on it from inside the client. Its answer
  opens the limit to `MIN_LIMIT` (or the pool, if smaller).
- It grows while it is what holds calls back: by one per answered call until the first sign
  of congestion (slow start), then by one per window of answered calls.
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

from ._queue import TurnQueue

#: aiobotocore's default ``max_pool_connections``, for a client that does not say.
DEFAULT_POOL = 10
#: The limit never falls below this (or the pool, if smaller): a loop that lags from other
#: work still needs calls in flight to make any progress.
MIN_LIMIT = 16
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
        self._last_decrease = -math.inf

    @property
    def capacity(self) -> int:
        """How many short calls may be in flight now."""
        return max(1, min(int(self.limit), self.pool - self.long_calls))

    def spare(self) -> bool:
        """Whether a call could go now without making another wait."""
        return self.in_flight < self.capacity and self.queue.empty()

    async def enter(self, deadline: float) -> bool:
        """Take a place on the wire before ``deadline``; False if none came free in time."""
        if self.in_flight < self.capacity and self.queue.empty():
            self.in_flight += 1
            return True
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
        """Give every place free now to the callers waiting, the most urgent first."""
        while self.in_flight < self.capacity and self.queue.hand_over():
            self.in_flight += 1

    def first_answer(self) -> None:
        """The client is warm: open up to the floor at once, and grow from there."""
        self.limit = max(self.limit, min(self.pool, MIN_LIMIT))
        self._hand_over()

    def loop_lag(self, lag: float, now: float) -> None:
        """The event loop ran something at ``now``, ``lag`` seconds after it was due."""
        if lag <= LOOP_LAG_LIMIT:
            return
        if now - self._last_decrease < DECREASE_EVERY:
            return
        self._last_decrease = now
        self._slow_start = False
        self.limit = max(min(MIN_LIMIT, self.pool), self.limit * DECREASE_FACTOR)
