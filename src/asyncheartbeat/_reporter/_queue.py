"""Callers waiting their turn for something scarce, the most urgent (earliest deadline) first."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from collections.abc import Callable

import anyio

from asyncheartbeat._clock import current_time


@dataclasses.dataclass(eq=False, slots=True)
class _Waiter:
    woken: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    gone: bool = False
    handed_over: bool = False


class TurnQueue:
    """Waiters served earliest deadline first, in one of two ways:

    - by `hand_over`: whoever frees a place gives it to the head of the line at once. Every
      place freed goes to a waiter in the same step, however busy the event loop: a waiter
      woken to check for itself would leave the place empty until it runs, and on a loop
      with hundreds of ready tasks that is one place filled per turn of the loop;
    - by the head asking (``seconds_until_free``), for a turn that comes with time (a rate):
      only the head sleeps, until its turn.

    A waiter whose deadline passes leaves. A place handed to a waiter cancelled before it
    could take it goes to ``on_unused``.
    """

    def __init__(self, on_unused: Callable[[], object] | None = None) -> None:
        self._heap: list[tuple[float, int, _Waiter]] = []
        self._order = itertools.count()
        self._on_unused = on_unused

    def __len__(self) -> int:
        return sum(not waiter.gone for _, _, waiter in self._heap)

    def empty(self) -> bool:
        return self._head() is None

    def wake(self) -> None:
        """Let the head of the line check again whether it may go."""
        if (head := self._head()) is not None:
            head.woken.set()

    def hand_over(self) -> bool:
        """Give a turn to the head of the line; False if nobody waits."""
        head = self._head()
        if head is None:
            return False
        heapq.heappop(self._heap)
        head.gone = head.handed_over = True
        head.woken.set()
        return True

    async def wait_turn(
        self,
        deadline: float,
        seconds_until_free: Callable[[float], float] | None = None,
        *,
        last_in_line: bool = False,
        until: float | None = None,
    ) -> bool:
        """Wait until handed a turn, or until this caller heads the line and
        ``seconds_until_free(now)`` is 0.

        Return False if ``deadline`` passes first. ``seconds_until_free`` returns how long
        until the head may go, or ``math.inf`` for "until `wake` is called"; without it, only
        `hand_over` gives a turn. With ``last_in_line``, the caller queues behind everyone
        waiting now, however urgent. With ``until``, it stops waiting then instead (still
        placed in line by its ``deadline``).
        """
        waiter = _Waiter()
        place = deadline
        if until is not None:
            deadline = min(deadline, until)
        if last_in_line and self._heap:
            place = max([place, *(entry[0] for entry in self._heap)])
        heapq.heappush(self._heap, (place, next(self._order), waiter))
        try:
            while not waiter.handed_over:
                now = current_time()
                if now >= deadline:
                    return False
                wait = math.inf
                if seconds_until_free is not None and self._head() is waiter:
                    wait = seconds_until_free(now)
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        waiter.gone = True
                        self.wake()  # what is free may serve the next one too
                        return True
                waiter.woken = anyio.Event()
                with anyio.move_on_after(min(wait, deadline - now)):
                    await waiter.woken.wait()
        except BaseException:
            if waiter.handed_over and self._on_unused is not None:
                self._on_unused()
            raise
        else:
            return True
        finally:
            if not waiter.gone:  # the deadline passed or the caller was cancelled
                waiter.gone = True
                self.wake()

    def _head(self) -> _Waiter | None:
        while self._heap and self._heap[0][2].gone:
            heapq.heappop(self._heap)
        return self._heap[0][2] if self._heap else None
