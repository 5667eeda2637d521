"""The timing rules: interval, lease, call timeout (when to hedge), stall timeout, backoff
and lateness, checked once."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping

#: The defaults of every heartbeat (`Heartbeat`, `run_with_heartbeat`, `TaskRunner`, the
#: command line): a report a minute, as the service asks, and its 5-minute lease.
DEFAULT_INTERVAL = 60.0
DEFAULT_LEASE_TIMEOUT = 300.0
#: The first retry waits up to this fraction of the interval; each further one doubles it.
BACKOFF_START = 1 / 8
#: A report that fires later than this (or half the interval, if longer) is reported late.
LATENESS_FLOOR = 1.0

_random = random.Random()


@dataclasses.dataclass(frozen=True, slots=True)
class Timing:
    interval: float
    lease_timeout: float
    call_timeout: float
    #: How long the body may show no progress before it is stopped; None: never.
    stall_timeout: float | None = None

    @classmethod
    def check(
        cls,
        interval: float,
        lease_timeout: float,
        call_timeout: float | None,
        stall_timeout: float | None = None,
        *,
        names: Mapping[str, str] | None = None,
    ) -> Timing:
        """Validate the options and fill in the default call timeout.

        ``names`` gives the name an error calls each parameter by, such as
        ``{"interval": "--interval"}`` for a command line's options; by default its own.
        """

        def name(parameter: str) -> str:
            return names.get(parameter, parameter) if names else parameter

        interval = check_seconds(name("interval"), interval)
        lease_timeout = check_seconds(name("lease_timeout"), lease_timeout)
        if lease_timeout <= interval:
            raise ValueError(
                f"{name('lease_timeout')} ({lease_timeout:g} s) must be greater than "
                f"{name('interval')} ({interval:g} s): otherwise the lease runs out between "
                "two reports"
            )
        if call_timeout is None:
            # A report sent one interval after the last answered one, unanswered for this
            # long, still leaves as long again for the second attempt beside it.
            call_timeout = min(interval, (lease_timeout - interval) / 2)
        call_timeout = check_seconds(name("call_timeout"), call_timeout)
        if interval + call_timeout >= lease_timeout:
            raise ValueError(
                f"{name('lease_timeout')} ({lease_timeout:g} s) leaves no room for a second "
                f"attempt after a slow answer: it must be more than {name('interval')} "
                f"({interval:g} s) plus {name('call_timeout')} ({call_timeout:g} s)"
            )
        # The watchdog is independent of the reports: any length works beside any interval.
        if stall_timeout is not None:
            stall_timeout = check_seconds(name("stall_timeout"), stall_timeout)
        return cls(interval, lease_timeout, call_timeout, stall_timeout)

    @property
    def backoff_start(self) -> float:
        """The first retry waits up to this long; each further one doubles it, up to interval."""
        return self.interval * BACKOFF_START

    @property
    def lateness_threshold(self) -> float:
        return max(LATENESS_FLOOR, self.interval / 2)

    def next_due(
        self,
        anchor: float,
        now: float,
        lease_end: float,
        answer_takes: float = 0.0,
        period: float | None = None,
    ) -> float:
        """The first slot on the ``anchor + k * period`` grid that is still ahead of ``now``
        (``period``: the interval, unless the reports are paced).

        A call slower than the period skips the slots it covered instead of bursting; but
        a report sent on a slot whose answer, taking ``answer_takes``, would come at or past
        ``lease_end`` would lose the lease, so then the report goes now.
        """
        period = period or self.interval
        due = anchor + period
        if due <= now:
            due = anchor + (math.floor((now - anchor) / period) + 1) * period
        return due if due + answer_takes < lease_end else now


def jittered_backoff(
    failures: int, *, start: float, cap: float, rng: random.Random | None = None
) -> float:
    """A delay drawn from ``[0, min(cap, start·2ⁿ⁻¹)]`` after ``n`` failures ("full jitter")."""
    return (rng or _random).uniform(0, min(cap, start * 2 ** min(failures - 1, 32)))


def check_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as a float if it is a finite number of seconds above 0 (or 0 itself, with
    ``allow_zero``), else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not (math.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
        bound = "0 or more" if allow_zero else "greater than 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, not {value!r}")
    return float(value)
