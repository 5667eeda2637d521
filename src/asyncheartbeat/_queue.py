"""Callers waiting their turn for something scarce, the most urgent (earliest deadline) first."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from collections.abc import Callable

import anyio


@dataclasses.dataclass(eq=False, slots=True)
class _Waiter:
    woken: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    gone: bool = False


class TurnQueue:
    """Waiters served earliest deadline first.

    Only the head of the line asks whether it may go (``seconds_until_free``); whoever
    frees what the line waits for calls `wake`. A waiter whose deadline passes leaves.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Waiter]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return sum(not waiter.gone for _, _, waiter in self._heap)

    def empty(self) -> bool:
        return self._head() is None

    def wake(self) -> None:
        """Let the head of the line check again whether it may go."""
        if (head := self._head()) is not None:
            head.woken.set()

    async def wait_turn(
        self,
        deadline: float,
        seconds_until_free: Callable[[float], float],
        *,
        last_in_line: bool = False,
    ) -> bool:
        """Wait until this caller heads the line and ``seconds_until_free(now)`` is 0.

        Return False if ``deadline`` passes first. ``seconds_until_free`` returns how long
        until the head may go, or ``math.inf`` for "until `wake` is called". With
        ``last_in_line``, the caller queues behind everyone waiting now, however urgent.
        """
        waiter = _Waiter()
        place = deadline
        if last_in_line and self._heap:
            place = max([place, *(entry[0] for entry in self._heap)])
        heapq.heappush(self._heap, (place, next(self._order), waiter))
        try:
            while True:
                now = anyio.current_time()
                if now >= deadline:
                    return False
                wait = math.inf
                if self._head() is waiter:
                    wait = seconds_until_free(now)
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        waiter.gone = True
                        self.wake()  # what is free may serve the next one too
                        return True
                waiter.woken = anyio.Event()
                with anyio.move_on_after(min(wait, deadline - now)):
                    await waiter.woken.wait()
        finally:
            if not waiter.gone:  # the deadline passed or the caller was cancelled
                waiter.gone = True
                self.wake()

    def _head(self) -> _Waiter | None:
        while self._heap and self._heap[0][2].gone:
            heapq.heappop(self._heap)
        return self._heap[0][2] if self._heap else None
