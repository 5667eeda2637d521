"""What happened, as a frozen record handed to each hook."""

from __future__ import annotations

import dataclasses
import enum

from asyncheartbeat._errors import CancelReason


class EventKind(enum.StrEnum):
    """What kind of thing an `Event` records.

    Attributes:
        ANSWERED: The service answered a call.
        FAILED: A call failed: a transient error (it is retried) or a final one (a verdict
            follows).
        THROTTLED: The service answered ThrottlingException: the client's rate for the
            operation was lowered to ``rate`` calls/s, and the call waits for its turn again.
        RETRIED: A failed call is tried again after ``delay`` seconds.
        HEDGED: A call unanswered for ``delay`` seconds got a second attempt beside it.
        LATE: A scheduled report started ``delay`` seconds after its slot.
        SCHEDULED: A scheduled report was answered, or given up, ``delay`` seconds after
            its slot: its lateness against the schedule (every scheduled report; LATE
            only for those over the threshold).
        ACKNOWLEDGED: A heartbeat's first report was answered and its body starts: it
            holds the lease.
        ENDED: A heartbeat that was ACKNOWLEDGED has ended, by any way out (``reason`` set
            if it stopped the work): exactly one ENDED follows each ACKNOWLEDGED.
        VERDICT: A heartbeat stopped its work, for ``reason``.
        OVERLOADED: Over the last window, more reports were late than the client can
            explain by errors.
        LOOP_BLOCKED: Seen from a `ReportingThread`: the event loop its heartbeats' bodies
            run on has not run for ``delay`` seconds (once per block).
    """

    #: The service answered a call.
    ANSWERED = "answered"
    #: A call failed: a transient error (it is retried) or a final one (a verdict follows).
    FAILED = "failed"
    #: The service answered ThrottlingException: the client's rate for the operation was
    #: lowered to ``rate`` calls/s, and the call waits for its turn again.
    THROTTLED = "throttled"
    #: A failed call is tried again after ``delay`` seconds.
    RETRIED = "retried"
    #: A call unanswered for ``delay`` seconds got a second attempt beside it (a hedge).
    HEDGED = "hedged"
    #: A scheduled report started ``delay`` seconds after its slot.
    LATE = "late"
    #: A scheduled report was answered, or given up, ``delay`` seconds after its slot: its
    #: lateness against the schedule (every scheduled report; LATE only for those over the
    #: threshold).
    SCHEDULED = "scheduled"
    #: A heartbeat's first report was answered and its body starts: it holds the lease.
    ACKNOWLEDGED = "acknowledged"
    #: A heartbeat that was ACKNOWLEDGED has ended, by any way out (``reason`` set if it
    #: stopped the work): exactly one ENDED follows each ACKNOWLEDGED.
    ENDED = "ended"
    #: A heartbeat stopped its work, for ``reason``.
    VERDICT = "verdict"
    #: Over the last window, more reports were late than the client can explain by errors.
    OVERLOADED = "overloaded"
    #: Seen from a `ReportingThread`: the event loop its heartbeats' bodies run on has not
    #: run for ``delay`` seconds (once per block).
    LOOP_BLOCKED = "loop-blocked"


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened to a call or a heartbeat. Fields that do not apply are None.

    Attributes:
        kind: What happened.
        operation: The API operation, such as ``"ReportTaskProgress"``.
        task_id: The task the call was for, if any.
        attempt: Which attempt of this request (1 for the first).
        latency: Seconds from sending to the answer or failure.
        delay: Seconds: the wait before a retry, before a hedge, or a report's lateness.
        error: The exception a failed call raised.
        description: What happened, in words (error code and message, for a failure).
        reason: Why the work was stopped, for ``VERDICT``.
        rate: The client's new rate for ``operation`` in calls/s, for ``THROTTLED``.
        final: Whether a ``FAILED`` call ends the request (no retry).
        heartbeats: For ``OVERLOADED``: the heartbeats sharing the client.
        asked_per_second: For ``OVERLOADED``: the reports/s they ask for together.
        lease_left: For an ``ANSWERED`` report of a task whose lease is held: the share of
            its lease (0 to 1) the task had left when the report was answered. Near 0, the
            next lost answer loses the lease: a fleet near its account's limit shows here
            first.
    """

    kind: EventKind
    #: The API operation, e.g. ``"ReportTaskProgress"``.
    operation: str
    #: The task the call was for, if any.
    task_id: str | None = None
    #: Which attempt of this request (1 for the first).
    attempt: int | None = None
    #: Seconds from sending to the answer or failure.
    latency: float | None = None
    #: Seconds: the wait before a retry, before a hedge, or a report's lateness.
    delay: float | None = None
    #: The exception a failed call raised.
    error: BaseException | None = None
    #: What happened, in words (error code and message, for a failure).
    description: str = ""
    #: Why the work was stopped, for VERDICT.
    reason: CancelReason | None = None
    #: The client's new rate for ``operation`` in calls/s, for THROTTLED.
    rate: float | None = None
    #: Whether a FAILED call ends the request (no retry).
    final: bool = False
    #: For OVERLOADED: heartbeats sharing the client, and the reports/s they ask for.
    heartbeats: int | None = None
    asked_per_second: float | None = None
    #: For an ANSWERED report of a held lease: the share of its lease (0 to 1) left when
    #: the report was answered.
    lease_left: float | None = None
