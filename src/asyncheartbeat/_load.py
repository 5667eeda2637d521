"""What the heartbeats sharing one client share: its connections, overload, and warnings.

Thousands of heartbeats may share one client. When they ask for more reports than the event
loop, the connection pool or the service can deliver, every one of them falls behind at
once. Three things keep that graceful:

- Calls wait in line for one of the client's connections *before* their ``call_timeout``
  starts. A call timed out while queued inside the client's pool would lose its place,
  retry later and, if cut mid-flight, waste the service's work: under overload most of the
  capacity would go to calls that are then thrown away.
- One WARNING per window names the overload, instead of thousands of per-task lines.
- Per-task warnings are capped per window, so that a bad minute cannot flood the log.
"""

from __future__ import annotations

import logging

import anyio

logger = logging.getLogger("asyncheartbeat")

#: Load is judged, and per-task warnings counted, over windows of this many seconds.
WINDOW = 10.0
#: Per-task warnings logged per client and window; the rest are counted and summed up.
WARNINGS_PER_WINDOW = 10
#: The share of due reports that must be late, for heartbeats to count as overloaded.
OVERLOAD_SHARE = 0.1


class ClientLoad:
    """The reports of the heartbeats sharing one client, over the current window."""

    def __init__(self, connections: int | None) -> None:
        #: One token per connection of the client's pool; None where the pool is unknown.
        self.connections = None if connections is None else anyio.Semaphore(connections)
        self.heartbeats = 0
        self.asked_per_second = 0.0
        self._window_start: float | None = None
        self._due = 0
        self._late = 0
        self._worst = 0.0
        self._errors = 0
        self._warnings = 0
        self._suppressed = 0

    def warn(self, now: float, message: str, *args: object) -> None:
        """Log a per-task WARNING, unless this window has had its share already."""
        self._roll(now)
        if self._warnings < WARNINGS_PER_WINDOW:
            self._warnings += 1
            logger.warning(message, *args)
        else:
            self._suppressed += 1

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
        if self._suppressed:
            logger.warning(
                "%d more heartbeat warnings in the last %.0f s were not logged",
                self._suppressed,
                elapsed,
            )
        overloaded = (
            self.heartbeats > 1
            and self._late >= max(1, OVERLOAD_SHARE * self._due)
            and self._errors < self._late
        )
        if overloaded:
            logger.warning(
                "heartbeats overloaded: %d of %d reports due in the last %.0f s were late "
                "(up to %.2f s); %d heartbeats share this client and ask for %.0f reports/s, "
                "more than the event loop, the client's connection pool or the service can "
                "deliver. Lengthen the interval, raise the client's max_pool_connections, or "
                "spread the tasks over more processes",
                self._late,
                self._due,
                elapsed,
                self._worst,
                self.heartbeats,
                self.asked_per_second,
            )
        self._window_start = now
        self._due = self._late = self._errors = self._warnings = self._suppressed = 0
        self._worst = 0.0


# By id(client), while at least one heartbeat of that client runs: the entry goes with the
# last one, so a recycled id never inherits an old client's numbers.
_loads: dict[int, ClientLoad] = {}


def join(client: object, interval: float) -> ClientLoad:
    """Count a running heartbeat against its client's load."""
    load = _loads.get(id(client))
    if load is None:
        load = _loads[id(client)] = ClientLoad(pool_size(client))
    load.heartbeats += 1
    load.asked_per_second += 1 / interval
    return load


def leave(client: object, interval: float) -> None:
    load = _loads[id(client)]
    load.heartbeats -= 1
    load.asked_per_second -= 1 / interval
    if load.heartbeats == 0:
        del _loads[id(client)]


def pool_size(client: object) -> int | None:
    """How many calls the client can have on the wire at once: its botocore config's
    ``max_pool_connections`` (aiobotocore's default is 10), or None if it has none."""
    config = getattr(getattr(client, "meta", None), "config", None)
    size = getattr(config, "max_pool_connections", None)
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None
