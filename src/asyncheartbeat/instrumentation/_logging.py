"""Logging, as one consumer of the events: what an operator reads in the logs."""

from __future__ import annotations

import logging

import anyio

from asyncheartbeat._errors import CancelReason

from ._events import Event, EventKind

logger = logging.getLogger("asyncheartbeat")

#: Per-task warnings are counted over windows of this many seconds.
WINDOW = 10.0
#: Per-task warnings logged per window; the rest are counted and summed up in one line.
WARNINGS_PER_WINDOW = 10


class LoggingHook:
    """Log each event on the ``asyncheartbeat`` logger.

    Per-task warnings (retries, throttling, lateness) are capped at `WARNINGS_PER_WINDOW`
    per `WINDOW`, so that a bad minute of thousands of heartbeats cannot flood the log.

    DEBUG for each answered call, WARNING for each retried, throttled or late one, INFO when
    the service cancels a task, WARNING when the heartbeat stops the work for any other
    reason, and one WARNING every 10 s while heartbeats sharing a client are overloaded.
    Verdicts are always logged. Credentials never appear.
    """

    def __init__(self) -> None:
        self._window_start: float | None = None
        self._warnings = 0
        self._suppressed = 0

    def __call__(self, event: Event) -> None:
        match event.kind:
            case EventKind.ANSWERED:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "%s%s answered in %.1f ms",
                        event.operation, _for_task(event), (event.latency or 0) * 1000,
                    )  # fmt: skip
            case EventKind.RETRIED:
                self._warn(
                    "%s%s failed (%s); attempt %d, next in %.3f s",
                    event.operation, _for_task(event), event.description, event.attempt,
                    event.delay,
                )  # fmt: skip
            case EventKind.FAILED if not event.final:  # final failures are told by their verdict
                self._warn(
                    "%s%s failed, not tried again: %s",
                    event.operation, _for_task(event), event.description,
                )  # fmt: skip
            case EventKind.THROTTLED:
                self._warn(
                    "%s%s throttled (%s): this client now sends at most %.2f calls/s of it",
                    event.operation, _for_task(event), event.description, event.rate,
                )  # fmt: skip
            case EventKind.HEDGED:
                logger.info(
                    "%s%s unanswered after %.3f s: a second attempt is sent beside it",
                    event.operation, _for_task(event), event.delay,
                )  # fmt: skip
            case EventKind.LATE:
                self._warn(
                    "report for task %r is %.2f s late: the event loop was blocked (blocking "
                    "code in an async task?) or is overloaded; %s",
                    event.task_id, event.delay, event.description,
                )  # fmt: skip
            case EventKind.VERDICT:
                level = logging.INFO if event.reason is CancelReason.REQUESTED else logging.WARNING
                logger.log(
                    level,
                    "stopping the work of task %r: %s (%s)",
                    event.task_id, event.reason.value if event.reason else "?", event.description,
                )  # fmt: skip
            case EventKind.OVERLOADED:
                logger.warning("heartbeats overloaded: %s", event.description)

    def _warn(self, message: str, *args: object) -> None:
        try:
            now = anyio.current_time()
        except Exception:  # no event loop: nothing to cap against
            logger.warning(message, *args)
            return
        if self._window_start is None or now - self._window_start >= WINDOW:
            if self._suppressed:
                logger.warning(
                    "%d more heartbeat warnings in the last %.0f s were not logged",
                    self._suppressed,
                    now - (self._window_start or now),
                )
            self._window_start = now
            self._warnings = self._suppressed = 0
        if self._warnings < WARNINGS_PER_WINDOW:
            self._warnings += 1
            logger.warning(message, *args)
        else:
            self._suppressed += 1


def _for_task(event: Event) -> str:
    return f" for task {event.task_id!r}" if event.task_id is not None else ""
