"""Overload: heartbeats sharing a client asking for more reports than it delivers.

Thousands of heartbeats may share one client. When they ask for more than the event loop,
the client or the service can deliver, they all fall behind at once; one event per window
names that, instead of thousands of per-task lines.
"""

from __future__ import annotations

from collections.abc import Callable

#: Load is judged over windows of this many seconds.
WINDOW = 10.0
#: The share of due reports that must be late, for heartbeats to count as overloaded.
OVERLOAD_SHARE = 0.1


class OverloadWindow:
    """The scheduled reports of the heartbeats sharing one client, over the current window."""

    def __init__(
        self, on_overload: Callable[[str], object], load: Callable[[], tuple[int, float]]
    ) -> None:
        self._on_overload = on_overload
        #: How many heartbeats share the client now, and how many reports/s they ask for.
        self._load = load
        self._window_start: float | None = None
        self._due = 0
        self._late = 0
        self._worst = 0.0
        self._errors = 0

    def error(self, now: float) -> None:
        """A call failed with an error, not by timing out: trouble, but not overload."""
        self._roll(now)
        self._errors += 1

    def report_due(self, now: float, lateness: float, threshold: float) -> None:
        """A scheduled report was answered (or given up) ``lateness`` seconds after its slot."""
        self._roll(now)
        self._due += 1
        if lateness > threshold:
            self._late += 1
            self._worst = max(self._worst, lateness)

    def _roll(self, now: float) -> None:
        if self._window_start is None:
            self._window_start = now
        elapsed = now - self._window_start
        if elapsed < WINDOW:
            return
        heartbeats, asked = self._load()
        overloaded = (
            heartbeats > 1
            and self._late >= max(1, OVERLOAD_SHARE * self._due)
            and self._errors < self._late
        )
        if overloaded:
            self._on_overload(
                f"{self._late} of {self._due} reports due in the last {elapsed:.0f} s were late "
                f"(up to {self._worst:.2f} s); {heartbeats} heartbeats share this client and ask "
                f"for {asked:.0f} reports/s, more than the event loop, the client's connection "
                f"pool or the service can deliver. Lengthen the interval, raise the client's "
                f"max_pool_connections, or spread the tasks over more processes"
            )
        self._window_start = now
        self._due = self._late = self._errors = 0
        self._worst = 0.0
