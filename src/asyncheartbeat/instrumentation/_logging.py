"""Logging, as one consumer of the events: what an operator reads in the logs."""

from __future__ import annotations

import logging
from typing import Any

from asyncheartbeat._clock import current_time
from asyncheartbeat._errors import CancelReason
from asyncheartbeat._log import fields, one_line

from ._events import Event, EventKind

logger = logging.getLogger("asyncheartbeat")

#: Per-task warnings are counted over windows of this many seconds.
WINDOW = 10.0
#: Events this hook does not log: a scheduled report's lateness (LATE tells the late ones),
#: a heartbeat's start and end (its verdict tells why it stopped).
_NOT_LOGGED = frozenset({EventKind.SCHEDULED, EventKind.ACKNOWLEDGED, EventKind.ENDED})
#: Per-task warnings logged per window; the rest are counted and summed up in one line.
WARNINGS_PER_WINDOW = 10


class LoggingHook:
    """Log each event on the ``asyncheartbeat`` logger, one line per record.

    Per-task warnings (retries, throttling, lateness) are capped at `WARNINGS_PER_WINDOW`
    per `WINDOW`, so that a bad minute of thousands of heartbeats cannot flood the log.

    DEBUG for each answered call, WARNING for each retried, throttled or late one, INFO when
    the service cancels a task, WARNING when the heartbeat stops the work for any other
    reason, and one WARNING every 10 s while heartbeats sharing a client are overloaded.
    Verdicts are always logged. Credentials never appear.

    Every record the library logs (here, in `TaskRunner` and in the command line) carries
    its facts as attributes, for JSON log pipelines; those that do not apply are absent:

    - ``hb_event``: what happened: an `EventKind` value (``"retried"``, ``"verdict"`` …),
      or for other records ``"warnings_suppressed"``, ``"hook_failed"``,
      ``"acknowledged"``, ``"heartbeat_crashed"``, ``"runner_started"``,
      ``"runner_stopping"``, ``"runner_stopped"``, ``"runner_terminate"``,
      ``"poll_refused"``, ``"poll_failed"``, ``"task_malformed"``, ``"status_refused"``,
      ``"status_failed"``, ``"task_<kind>"`` (a `TaskEvent` kind: ``"task_started"`` …),
      ``"on_event_failed"``, ``"command_sigkill"``;
    - ``hb_task_id``, ``hb_operation`` (``"ReportTaskProgress"`` …), ``hb_attempt`` (1 for
      the first);
    - ``hb_reason``: a `CancelReason` value (``"lease-lost"`` …);
    - ``hb_delay``: seconds before a retry, of a hedge's wait, or of a report's lateness;
      ``hb_latency``: seconds from sending to the answer; ``hb_duration``: seconds a task ran;
    - ``hb_detail``: the error or explanation, on one line; ``hb_rate``: calls/s after
      throttling; ``hb_heartbeats``, ``hb_asked_per_second`` (overload);
      ``hb_suppressed``, ``hb_window`` (warnings not logged, over seconds);
    - for a task runner: ``hb_taskrunner_id``, ``hb_worker_group``, ``hb_pipeline_id``,
      ``hb_attempt_id``, ``hb_status`` (the SetTaskStatus sent), ``hb_running`` (tasks
      still running), ``hb_concurrency``; ``hb_pid`` (a command's process group).

    Task ids and other identifiers are quoted in messages (``task 'abc'``).
    """

    def __init__(self) -> None:
        self._window_start: float | None = None
        self._warnings = 0
        self._suppressed = 0

    def __call__(self, event: Event) -> None:
        """Log ``event``.

        Args:
            event: What happened.
        """
        if event.kind is EventKind.ANSWERED:
            # One per report: nothing is built unless it is logged.
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "%s%s answered in %.1f ms",
                    event.operation, _for_task(event), (event.latency or 0) * 1000,
                    extra=_extra(event),
                )  # fmt: skip
            return
        if event.kind in _NOT_LOGGED or (event.kind is EventKind.FAILED and event.final):
            return  # one per report, or told by its verdict: nothing to build
        extra = _extra(event)
        detail = extra.get("hb_detail", "")
        match event.kind:
            case EventKind.RETRIED:
                self._warn(
                    "%s%s failed (%s); attempt %d, next in %.3f s",
                    event.operation, _for_task(event), detail, event.attempt, event.delay,
                    extra=extra,
                )  # fmt: skip
            case EventKind.FAILED:
                self._warn(
                    "%s%s failed, not tried again: %s",
                    event.operation, _for_task(event), detail, extra=extra,
                )  # fmt: skip
            case EventKind.THROTTLED:
                self._warn(
                    "%s%s throttled (%s): this client now sends at most %.2f calls/s of it",
                    event.operation, _for_task(event), detail, event.rate, extra=extra,
                )  # fmt: skip
            case EventKind.HEDGED:
                logger.info(
                    "%s%s unanswered after %.3f s: a second attempt is sent beside it",
                    event.operation, _for_task(event), event.delay, extra=extra,
                )  # fmt: skip
            case EventKind.LATE:
                self._warn(
                    "report for task %r is %.2f s late: the event loop was blocked (blocking "
                    "code in an async task?) or is overloaded; %s",
                    event.task_id, event.delay, detail, extra=extra,
                )  # fmt: skip
            case EventKind.VERDICT:
                level = logging.INFO if event.reason is CancelReason.REQUESTED else logging.WARNING
                logger.log(
                    level,
                    "stopping the work of task %r: %s (%s)",
                    event.task_id, event.reason.value if event.reason else "?", detail,
                    extra=extra,
                )  # fmt: skip
            case EventKind.OVERLOADED:
                logger.warning("heartbeats overloaded: %s", detail, extra=extra)
            case EventKind.LOOP_BLOCKED:
                logger.warning(
                    "the job's event loop has not run for %.2f s (blocking code in an async "
                    "task?): %s", event.delay, detail, extra=extra,
                )  # fmt: skip

    def _warn(self, message: str, *args: object, extra: dict[str, Any]) -> None:
        try:
            now = current_time()
        except RuntimeError:  # no event loop: nothing to cap against
            logger.warning(message, *args, extra=extra)
            return
        if self._window_start is None or now - self._window_start >= WINDOW:
            if self._suppressed:
                window = now - (self._window_start or now)
                logger.warning(
                    "%d more heartbeat warnings in the last %.0f s were not logged",
                    self._suppressed, window,
                    extra=fields("warnings_suppressed", suppressed=self._suppressed, window=window),
                )  # fmt: skip
            self._window_start = now
            self._warnings = self._suppressed = 0
        if self._warnings < WARNINGS_PER_WINDOW:
            self._warnings += 1
            logger.warning(message, *args, extra=extra)
        else:
            self._suppressed += 1


def _extra(event: Event) -> dict[str, Any]:
    return fields(
        event.kind.value, task_id=event.task_id, operation=event.operation,
        attempt=event.attempt, reason=event.reason, delay=event.delay, latency=event.latency,
        detail=one_line(event.description) or None, rate=event.rate,
        heartbeats=event.heartbeats, asked_per_second=event.asked_per_second,
    )  # fmt: skip


def _for_task(event: Event) -> str:
    return f" for task {event.task_id!r}" if event.task_id is not None else ""
