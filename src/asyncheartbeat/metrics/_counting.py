"""What the metrics count, once for both backends: the metrics, their names and labels, and
the one rule that turns each event into counts."""

from __future__ import annotations

import dataclasses
import threading
import typing
from collections.abc import Callable
from typing import Literal

from asyncheartbeat._errors import CancelReason
from asyncheartbeat._runner import TaskEvent, TaskEventKind
from asyncheartbeat.instrumentation import Event, EventKind

REPORT = "ReportTaskProgress"
#: The outcomes of one attempt of a report.
REPORT_OUTCOMES = ("answered", "failed", "throttled")
#: How a runner's task can end (every TaskEvent kind but "started").
TASK_OUTCOMES = tuple(kind for kind in typing.get_args(TaskEventKind) if kind != "started")

#: Seconds: from a few milliseconds (a warm client) to a lease (300 s by default).
REPORT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                  120.0, 300.0)  # fmt: skip
#: Shares of a lease: alert well before 0 (a lease lost), where a fleet nears its limit.
LEASE_LEFT_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: Seconds: from a second to a day.
TASK_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
                43200.0, 86400.0)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric, as both backends name it.

    Args:
        key: The name this package uses for it.
        kind: ``"counter"``, ``"histogram"`` or ``"gauge"`` (an up-down counter in
            OpenTelemetry).
        prometheus: The Prometheus name (``_total`` for counters, ``_seconds`` for times).
        opentelemetry: The OpenTelemetry instrument name.
        unit: The OpenTelemetry unit (``s``, or a count in braces).
        label: The Prometheus label, or None.
        attribute: The OpenTelemetry attribute key for the same values, or None.
        description: What it counts.
    """

    key: str
    kind: Literal["counter", "histogram", "gauge"]
    prometheus: str
    opentelemetry: str
    unit: str
    label: str | None
    attribute: str | None
    description: str


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "reports", "counter", "asyncheartbeat_reports_total", "asyncheartbeat.reports",
        "{report}", "outcome", "asyncheartbeat.report.outcome",
        "ReportTaskProgress attempts by outcome: answered, failed (retried or not), throttled",
    ),
    MetricSpec(
        "report_duration", "histogram", "asyncheartbeat_report_duration_seconds",
        "asyncheartbeat.report.duration", "s", None, None,
        "Seconds from sending a report to its answer",
    ),
    MetricSpec(
        "report_lateness", "histogram", "asyncheartbeat_report_lateness_seconds",
        "asyncheartbeat.report.lateness", "s", None, None,
        "Seconds from a scheduled report's slot to its answer (or to giving it up)",
    ),
    MetricSpec(
        "report_lease_left", "histogram", "asyncheartbeat_report_lease_left_ratio",
        "asyncheartbeat.report.lease_left", "1", None, None,
        "The share of its lease (0 to 1) a task had left when its report was answered",
    ),
    MetricSpec(
        "leases_held", "gauge", "asyncheartbeat_leases_held", "asyncheartbeat.leases.held",
        "{lease}", None, None, "Heartbeats acknowledged and not yet ended",
    ),
    MetricSpec(
        "stops", "counter", "asyncheartbeat_stops_total", "asyncheartbeat.stops", "{stop}",
        "reason", "asyncheartbeat.stop.reason",
        "Heartbeats that stopped their work, by CancelReason value",
    ),
    MetricSpec(
        "tasks", "counter", "asyncheartbeat_tasks_total", "asyncheartbeat.tasks", "{task}",
        "outcome", "asyncheartbeat.task.outcome",
        "TaskRunner tasks ended, by outcome (the TaskEvent kind)",
    ),
    MetricSpec(
        "task_duration", "histogram", "asyncheartbeat_task_duration_seconds",
        "asyncheartbeat.task.duration", "s", "outcome", "asyncheartbeat.task.outcome",
        "Seconds from a TaskRunner task's start to its end, by outcome",
    ),
)  # fmt: skip
SPECS = {spec.key: spec for spec in METRICS}


class Counting:
    """The rule both backends follow: which event counts where. A backend implements the
    ``_record_*`` methods; this class decides when they are called.

    - A report attempt counts once: ANSWERED (with its latency and the lease left),
      THROTTLED, or failed (RETRIED, or a FAILED of the calls, which number its attempt; a
      FAILED without one is a heartbeat's note about a call already counted). Attempts cut
      by their deadline, or let go as another attempt answered, count nowhere.
    - SCHEDULED gives the lateness; VERDICT a stop, labelled ``reason.value`` (so a reason
      added later needs nothing here), except a stall, counted by the ENDED of a heartbeat
      that ended STALLED (a canceled answer to its final report replaces it);
      ACKNOWLEDGED and ENDED move the leases held.
    - A `TaskEvent` other than ``"started"`` counts a task and its duration.
    """

    def __init__(self) -> None:
        self._held = 0
        self._lock = threading.Lock()
        self._rules: dict[EventKind, Callable[[Event], None]] = {
            EventKind.VERDICT: self._verdict,
            EventKind.ACKNOWLEDGED: self._acknowledged,
            EventKind.ENDED: self._ended,
            EventKind.ANSWERED: self._answered,
            EventKind.SCHEDULED: self._scheduled,
            EventKind.THROTTLED: self._throttled,
            EventKind.RETRIED: self._failed,
            EventKind.FAILED: self._failed,
        }

    def __call__(self, event: Event | TaskEvent, /) -> None:
        """Count ``event``: an instrumentation `Event` (as a hook) or a `TaskEvent` (as a
        `TaskRunner`'s ``on_event``).

        Args:
            event: What happened.
        """
        if isinstance(event, TaskEvent):
            if event.kind != "started":
                self._record_task(event.kind, event.duration)
        elif (rule := self._rules.get(event.kind)) is not None:
            rule(event)

    def _verdict(self, event: Event) -> None:
        # A stall is counted when its heartbeat ends: its final report may still be answered
        # canceled: true, whose VERDICT then replaces it (one stop per heartbeat).
        if event.reason is not None and event.reason is not CancelReason.STALLED:
            self._record_stop(event.reason)

    def _acknowledged(self, event: Event) -> None:
        with self._lock:
            self._held += 1
        self._record_leases(1)

    def _ended(self, event: Event) -> None:
        if event.reason is CancelReason.STALLED:
            self._record_stop(CancelReason.STALLED)
        # A hook installed while heartbeats ran never saw their ACKNOWLEDGED: their ENDED
        # must not take the gauge below what it counted.
        with self._lock:
            counted = self._held > 0
            self._held -= counted
        if counted:
            self._record_leases(-1)

    def _answered(self, event: Event) -> None:
        if event.operation == REPORT:
            self._record_report("answered")
            if event.latency is not None:
                self._record_report_duration(event.latency)
            if event.lease_left is not None:
                self._record_lease_left(event.lease_left)

    def _scheduled(self, event: Event) -> None:
        if event.delay is not None:
            self._record_lateness(event.delay)

    def _throttled(self, event: Event) -> None:
        if event.operation == REPORT:
            self._record_report("throttled")

    def _failed(self, event: Event) -> None:
        # The calls number the attempt of every FAILED it sends; a FAILED without one
        # is a heartbeat's note about a call the calls already told.
        if event.operation == REPORT and event.attempt is not None:
            self._record_report("failed")

    def _record_report(self, outcome: str) -> None:
        raise NotImplementedError

    def _record_report_duration(self, seconds: float) -> None:
        raise NotImplementedError

    def _record_lateness(self, seconds: float) -> None:
        raise NotImplementedError

    def _record_lease_left(self, share: float) -> None:
        raise NotImplementedError

    def _record_leases(self, change: int) -> None:
        raise NotImplementedError

    def _record_stop(self, reason: CancelReason) -> None:
        raise NotImplementedError

    def _record_task(self, outcome: str, seconds: float) -> None:
        raise NotImplementedError
