"""The task-runner half of Data Pipeline, in memory: pipelines, attempts and their leases.

Every method takes the current time from its caller, so the rules can be driven by any
clock. Leases expire lazily: `expire` runs before each request is served, and
`next_deadline` tells a waiting poller when the next expiry may hand it a task.
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
import itertools
import re
import secrets
import string
import time
from collections.abc import Iterator
from typing import Any

import anyio

from asyncheartbeat._timing import check_seconds

from ._errors import ServiceError


def new_task_id() -> str:
    """43 URL-safe characters like the service's, never starting with '-'."""
    # A leading '-' makes the AWS CLI read `--task-id -abc…` as an unknown option.
    while (task_id := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return task_id


DEFAULT_ACK_TIMEOUT = 120.0
DEFAULT_REPORT_TIMEOUT = 300.0
DEFAULT_POLL_TIMEOUT = 90.0
DEFAULT_MAXIMUM_RETRIES = 2
#: The service's limit on retries of one activity.
MAXIMUM_RETRIES_LIMIT = 5

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(second|minute|hour|day)s?\s*", re.IGNORECASE)
_SECONDS_PER_UNIT = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class AttemptStatus(enum.StrEnum):
    """An attempt's ``@status``, as DescribeObjects shows it.

    Attributes:
        WAITING_FOR_RUNNER: Ready for a poller of its worker group.
        RUNNING: Handed out to a runner.
        FINISHED: SetTaskStatus FINISHED.
        FAILED: SetTaskStatus FAILED (a new attempt follows while ``maximumRetries`` allows).
        CANCELED: Cancelled (SetStatus CANCEL, DeactivatePipeline, DeletePipeline).
        TIMEDOUT: Not acknowledged in time, or no report for its report timeout; a new
            attempt follows.
        FALSE: SetTaskStatus FALSE (a precondition that does not hold).
    """

    WAITING_FOR_RUNNER = "WAITING_FOR_RUNNER"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    TIMEDOUT = "TIMEDOUT"
    FALSE = "FALSE"


_LIVE = (AttemptStatus.WAITING_FOR_RUNNER, AttemptStatus.RUNNING)


@dataclasses.dataclass(eq=False)
class Pipeline:
    pipeline_id: str
    name: str
    unique_id: str
    description: str
    tags: list[dict[str, str]]
    created_at: float
    objects: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    parameter_objects: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    parameter_values: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: PENDING (created), SCHEDULED (activated) or INACTIVE (deactivated).
    state: str = "PENDING"
    deleted: bool = False
    paused: set[str] = dataclasses.field(default_factory=set)
    #: Attempt ids are unique within their pipeline, as in the service.
    attempts: dict[str, Attempt] = dataclasses.field(default_factory=dict)

    def field(self, object_id: str, key: str) -> str | None:
        """A field's value with Data Pipeline's inheritance: own, ``parent`` chain, ``Default``."""
        seen: set[str] = set()
        chain = [object_id]
        while chain:
            current = chain.pop(0)
            if current in seen or current not in self.objects:
                continue
            seen.add(current)
            fields = self.objects[current]["fields"]
            for item in fields:
                if item["key"] == key:
                    return str(item.get("stringValue", item.get("refValue")))
            chain += [f["refValue"] for f in fields if f["key"] == "parent" and "refValue" in f]
            if not chain and "Default" not in seen:
                chain.append("Default")
        return None

    def activities(self) -> Iterator[str]:
        for object_id in self.objects:
            kind = self.field(object_id, "type") or ""
            if kind.endswith("Activity") and self.field(object_id, "workerGroup"):
                yield object_id


@dataclasses.dataclass(eq=False)
class Attempt:
    """One attempt at one activity: what a task id stands for while a runner holds it.

    `LocalDataPipeline.attempt` returns the live record; read it, do not change it.

    Attributes:
        attempt_id: The attempt object's id, ``@<activity>_<time>_Attempt=<number>``.
        pipeline_id: Its pipeline.
        activity_id: The activity it is an attempt at.
        worker_group: The worker group its task is for.
        number: 1 for the first attempt, 2 for its first retry, and so on.
        report_timeout: Seconds without a report after which it is TIMEDOUT.
        maximum_retries: How many retries a FAILED status may start.
        status: Where it stands.
        task_id: The task id it was handed out under, or None while it waits.
        handed_out_at: When it was handed out (the server's anyio clock), or None.
        last_report_at: When its last report arrived, or None before the acknowledgement.
        hostname: The poller's ``hostname``, if it sent one.
        fields: The progress fields reported on it: ``{key: value}``.
        error_id: The ``errorId`` of a FAILED status, or None.
        error_message: The ``errorMessage`` of a FAILED status, or None.
        error_stack_trace: The ``errorStackTrace`` of a FAILED status, or None.
    """

    attempt_id: str
    pipeline_id: str
    activity_id: str
    worker_group: str
    number: int
    report_timeout: float
    maximum_retries: int
    status: AttemptStatus = AttemptStatus.WAITING_FOR_RUNNER
    task_id: str | None = None
    handed_out_at: float | None = None
    last_report_at: float | None = None
    hostname: str | None = None
    #: The progress fields reported on the attempt: ``{key: value}``.
    fields: dict[str, str] = dataclasses.field(default_factory=dict)
    _field_kinds: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)
    error_id: str | None = None
    error_message: str | None = None
    error_stack_trace: str | None = None

    @property
    def canceled(self) -> bool:
        """Whether it was cancelled: its reports answer ``canceled: true``."""
        return self.status is AttemptStatus.CANCELED

    def record(self, fields: list[dict[str, str]]) -> None:
        """Keep the latest value of each reported field, string or reference.

        Args:
            fields: A report's fields, in the API's shape.
        """
        for item in fields:
            kind = "stringValue" if "stringValue" in item else "refValue"
            self.fields[item["key"]] = item[kind]
            self._field_kinds[item["key"]] = kind

    @property
    def acknowledged(self) -> bool:
        """Whether a report acknowledged it."""
        return self.last_report_at is not None

    def as_object(self) -> dict[str, Any]:
        """The attempt as DescribeObjects shows it, in the API's shape."""
        fields = [
            {"key": "@status", "stringValue": self.status.value},
            {"key": "@componentParent", "refValue": self.activity_id},
            {"key": "@attemptNumber", "stringValue": str(self.number)},
            {"key": "workerGroup", "stringValue": self.worker_group},
        ]
        if self.hostname:
            fields.append({"key": "@hostname", "stringValue": self.hostname})
        for key, value in (
            ("errorId", self.error_id),
            ("errorMessage", self.error_message),
            ("errorStackTrace", self.error_stack_trace),
        ):
            if value is not None:
                fields.append({"key": key, "stringValue": value})
        fields += [{"key": k, self._field_kinds[k]: v} for k, v in self.fields.items()]
        return {"id": self.attempt_id, "name": self.attempt_id, "fields": fields}


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """The service's durations, shortened at will so that tests run in seconds.

    ``dp.service.timeouts`` on a `LocalDataPipeline`.

    Attributes:
        ack: Seconds a task handed out may wait for its first report before it goes to the
            next poller (the service's 2 minutes).
        report: Seconds an acknowledged task may go without a report, unless its activity
            sets ``reportProgressTimeout`` (the service's 5 minutes).
        poll: Seconds PollForTask holds a call when no task is ready, before it answers
            ``{}`` (the service's 90 s).

    Raises:
        TypeError: A duration that is not a number.
        ValueError: A duration that is not finite and above 0.
    """

    ack: float = DEFAULT_ACK_TIMEOUT
    report: float = DEFAULT_REPORT_TIMEOUT
    poll: float = DEFAULT_POLL_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("ack", "report", "poll"):
            check_seconds(f"the {name} timeout", getattr(self, name))


class DataPipelineService:
    """The service's state and rules, without the wire."""

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        self.timeouts = timeouts or Timeouts()
        self.pipelines: dict[str, Pipeline] = {}
        #: The task id a runner holds → its attempt.
        self.tasks: dict[str, Attempt] = {}
        #: Every task id ever handed out → its attempt, for reading back.
        self.handed_out: dict[str, Attempt] = {}
        #: taskrunnerId → the last ReportTaskRunnerHeartbeat's parameters.
        self.runners: dict[str, dict[str, Any]] = {}
        self.terminate_all = False
        self.terminate_runners: set[str] = set()
        self._leases: list[tuple[float, int, Attempt]] = []
        self._lease_order = itertools.count()
        self._ready: dict[str, list[Attempt]] = {}
        self._ready_events: dict[str, anyio.Event] = {}

    # -- pipelines -------------------------------------------------------------------------------

    def create_pipeline(
        self,
        name: str,
        unique_id: str,
        description: str = "",
        tags: list[dict[str, str]] | None = None,
    ) -> str:
        for pipeline in self.pipelines.values():
            # CreatePipeline is idempotent on (name, uniqueId), as the service documents.
            if not pipeline.deleted and (pipeline.name, pipeline.unique_id) == (name, unique_id):
                return pipeline.pipeline_id
        pipeline_id = "df-" + "".join(
            secrets.choice(string.ascii_uppercase + string.digits) for _ in range(20)
        )
        self.pipelines[pipeline_id] = Pipeline(
            pipeline_id, name, unique_id, description, list(tags or []), time.time()
        )
        return pipeline_id

    def pipeline(self, pipeline_id: str, operation: str = "") -> Pipeline:
        """The pipeline, or the error the service gives for a missing or deleted one."""
        pipeline = self.pipelines.get(pipeline_id)
        if pipeline is None:
            raise ServiceError("PipelineNotFoundException", f"pipeline {pipeline_id} not found")
        if pipeline.deleted:
            if operation in _NO_DELETED_ERROR:
                raise ServiceError("PipelineNotFoundException", f"pipeline {pipeline_id} not found")
            raise ServiceError("PipelineDeletedException", f"pipeline {pipeline_id} was deleted")
        return pipeline

    def put_definition(
        self,
        pipeline_id: str,
        objects: list[dict[str, Any]],
        parameter_objects: list[dict[str, Any]],
        parameter_values: list[dict[str, Any]],
        *,
        save: bool = True,
    ) -> dict[str, Any]:
        pipeline = self.pipeline(pipeline_id, "PutPipelineDefinition")
        candidate = Pipeline(pipeline_id, "", "", "", [], 0, {o["id"]: o for o in objects})
        errors = _definition_errors(candidate, objects)
        result = {
            "validationErrors": [{"id": oid, "errors": errs} for oid, errs in errors.items()],
            "validationWarnings": [],
            "errored": bool(errors),
        }
        if save and not errors:
            pipeline.objects = candidate.objects
            pipeline.parameter_objects = parameter_objects
            pipeline.parameter_values = parameter_values
        return result

    def activate(self, pipeline_id: str) -> None:
        pipeline = self.pipeline(pipeline_id, "ActivatePipeline")
        if not pipeline.objects:
            raise ServiceError(
                "InvalidRequestException", f"pipeline {pipeline_id} has no definition"
            )
        pipeline.state = "SCHEDULED"
        latest_of: dict[str, Attempt] = {}  # one pass, not one per activity
        for attempt in pipeline.attempts.values():
            current = latest_of.get(attempt.activity_id)
            if current is None or attempt.number > current.number:
                latest_of[attempt.activity_id] = attempt
        for activity_id in pipeline.activities():
            latest = latest_of.get(activity_id)
            if latest is None or latest.status not in (*_LIVE, AttemptStatus.FINISHED):
                self._new_attempt(pipeline, activity_id, 1 if latest is None else latest.number + 1)
            elif latest.status is AttemptStatus.WAITING_FOR_RUNNER:
                self._notify_ready(latest.worker_group)

    def deactivate(self, pipeline_id: str, cancel_active: bool) -> None:
        pipeline = self.pipeline(pipeline_id, "DeactivatePipeline")
        pipeline.state = "INACTIVE"
        if cancel_active:
            for attempt in self._live_attempts(pipeline):
                attempt.status = AttemptStatus.CANCELED

    def delete(self, pipeline_id: str) -> None:
        pipeline = self.pipeline(pipeline_id, "DeletePipeline")
        pipeline.deleted = True
        for attempt in self._live_attempts(pipeline):
            attempt.status = AttemptStatus.CANCELED

    def set_status(self, pipeline_id: str, object_ids: list[str], status: str) -> None:
        pipeline = self.pipeline(pipeline_id, "SetStatus")
        attempts = [pipeline.attempts[i] for i in object_ids if i in pipeline.attempts]
        components = [i for i in object_ids if i in pipeline.objects]
        unknown = set(object_ids) - {a.attempt_id for a in attempts} - set(components)
        if unknown:
            raise ServiceError(
                "InvalidRequestException", f"no objects {sorted(unknown)} in {pipeline_id}"
            )
        if attempts and components:
            raise ServiceError(
                "InvalidRequestException", "objectIds must be all instances or all components"
            )
        if status in ("CANCEL", "TRY_CANCEL"):
            for component in components:
                attempts += self._live_attempts(pipeline, component)
            for attempt in attempts:
                if attempt.status in _LIVE:
                    attempt.status = AttemptStatus.CANCELED
        elif status in ("PAUSE", "RESUME") and components:
            for component in components:
                if status == "PAUSE":
                    pipeline.paused.add(component)
                else:
                    pipeline.paused.discard(component)
                    for attempt in self._live_attempts(pipeline, component):
                        self._notify_ready(attempt.worker_group)
        else:
            raise ServiceError(
                "InvalidRequestException",
                f"status {status!r} is not emulated for these objects: use CANCEL or TRY_CANCEL "
                f"on instances or components, PAUSE or RESUME on components",
            )

    # -- tasks ---------------------------------------------------------------------------------

    def take_task(
        self,
        worker_group: str,
        hostname: str | None,
        now: float,
        *,
        task_id: str | None = None,
        pipeline_id: str | None = None,
    ) -> dict[str, Any] | None:
        """Hand out the first ready task of ``worker_group`` (of ``pipeline_id`` if given,
        under ``task_id`` if given)."""
        queue = self._ready.get(worker_group, [])
        chosen: Attempt | None = None
        index = 0
        while index < len(queue):
            attempt = queue[index]
            if attempt.status is not AttemptStatus.WAITING_FOR_RUNNER or attempt.task_id:
                del queue[index]  # canceled or handed out meanwhile
                continue
            pipeline = self.pipelines[attempt.pipeline_id]
            held_back = (
                pipeline_id not in (None, attempt.pipeline_id)
                or pipeline.deleted
                or pipeline.state != "SCHEDULED"
                or attempt.activity_id in pipeline.paused
            )
            if held_back:
                index += 1
                continue
            chosen = queue.pop(index)
            break
        if chosen is None:
            return None
        if task_id is not None and task_id in self.tasks:
            raise ValueError(f"task {task_id!r} exists already")
        chosen.task_id = task_id or new_task_id()
        chosen.handed_out_at = now
        chosen.hostname = hostname
        self.tasks[chosen.task_id] = chosen
        self.handed_out[chosen.task_id] = chosen
        self._lease(chosen, now + self.timeouts.ack)
        return self._task_object(self.pipelines[chosen.pipeline_id], chosen)

    def report_progress(self, task_id: str, fields: list[dict[str, str]], now: float) -> bool:
        """Record a report; return whether the runner should cancel."""
        attempt = self._held(task_id, "ReportTaskProgress")
        if attempt.canceled:
            return True
        if not attempt.acknowledged:
            attempt.status = AttemptStatus.RUNNING
            # The lease now runs on the report timeout, which may end before the ack timeout.
            self._lease(attempt, now + attempt.report_timeout)
        attempt.last_report_at = now
        attempt.record(fields)
        return False

    def set_task_status(
        self,
        task_id: str,
        status: str,
        error_id: str | None,
        error_message: str | None,
        error_stack_trace: str | None,
    ) -> None:
        attempt = self._held(task_id, "SetTaskStatus")
        if error_id and error_id.startswith("Service_"):
            raise ServiceError("InvalidRequestException", "errorId must not start with 'Service_'")
        del self.tasks[task_id]
        if attempt.canceled:
            return  # a canceled task needs no status; one sent anyway changes nothing
        attempt.error_id, attempt.error_message = error_id, error_message
        attempt.error_stack_trace = error_stack_trace
        attempt.status = AttemptStatus(status)
        if attempt.status is AttemptStatus.FAILED and attempt.number <= attempt.maximum_retries:
            self._new_attempt(
                self.pipelines[attempt.pipeline_id], attempt.activity_id, attempt.number + 1
            )

    def runner_heartbeat(self, params: dict[str, Any], now: float) -> bool:
        runner_id = params["taskrunnerId"]
        self.runners[runner_id] = {**self.runners.get(runner_id, {}), **params, "lastSeen": now}
        return self.terminate_all or runner_id in self.terminate_runners

    def forget(self, task_id: str) -> None:
        """Take a task back from its runner now, as a lease running out does."""
        self._reassign(self._held(task_id, ""))

    # -- leases ---------------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Apply every lease that ran out by ``now``."""
        while self._leases and self._leases[0][0] <= now:
            _, _, attempt = heapq.heappop(self._leases)
            if attempt.task_id is None or attempt.status not in _LIVE:
                continue
            deadline = self._lease_deadline(attempt)
            if deadline > now:
                self._lease(attempt, deadline)  # renewed by reports since: look again then
                continue
            self._reassign(attempt)

    def _reassign(self, attempt: Attempt) -> None:
        """The runner lost the task: its task id is void and the work is ready again."""
        assert attempt.task_id is not None
        del self.tasks[attempt.task_id]
        attempt.task_id = None
        if attempt.acknowledged:
            attempt.status = AttemptStatus.TIMEDOUT
            pipeline = self.pipelines[attempt.pipeline_id]
            self._new_attempt(pipeline, attempt.activity_id, attempt.number + 1)
        else:
            # Never acknowledged: the same attempt is handed out again.
            attempt.handed_out_at = None
            self._ready.setdefault(attempt.worker_group, []).insert(0, attempt)
            self._notify_ready(attempt.worker_group)

    def next_deadline(self) -> float | None:
        return self._leases[0][0] if self._leases else None

    def wake_pollers(self) -> None:
        """Wake every waiting poller, to look again (at shutdown, say)."""
        for worker_group in list(self._ready_events):
            self._notify_ready(worker_group)

    def ready_event(self, worker_group: str) -> anyio.Event:
        """Set when a task of ``worker_group`` may have become ready."""
        if worker_group not in self._ready_events:
            self._ready_events[worker_group] = anyio.Event()
        return self._ready_events[worker_group]

    # -- helpers -------------------------------------------------------------------------------

    def _held(self, task_id: str, operation: str) -> Attempt:
        attempt = self.tasks.get(task_id)
        if attempt is None:
            raise ServiceError("TaskNotFoundException", f"task {task_id!r} not found")
        self.pipeline(attempt.pipeline_id, operation)
        return attempt

    def _lease_deadline(self, attempt: Attempt) -> float:
        if attempt.last_report_at is not None:
            return attempt.last_report_at + attempt.report_timeout
        assert attempt.handed_out_at is not None
        return attempt.handed_out_at + self.timeouts.ack

    def _lease(self, attempt: Attempt, deadline: float) -> None:
        heapq.heappush(self._leases, (deadline, next(self._lease_order), attempt))

    def _new_attempt(self, pipeline: Pipeline, activity_id: str, number: int) -> Attempt:
        timeout = pipeline.field(activity_id, "reportProgressTimeout")
        retries = pipeline.field(activity_id, "maximumRetries")
        started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(pipeline.created_at))
        attempt = Attempt(
            attempt_id=f"@{activity_id}_{started}_Attempt={number}",
            pipeline_id=pipeline.pipeline_id,
            activity_id=activity_id,
            worker_group=pipeline.field(activity_id, "workerGroup") or "",
            number=number,
            report_timeout=parse_duration(timeout) if timeout else self.timeouts.report,
            maximum_retries=int(retries) if retries else DEFAULT_MAXIMUM_RETRIES,
        )
        pipeline.attempts[attempt.attempt_id] = attempt
        self._ready.setdefault(attempt.worker_group, []).append(attempt)
        self._notify_ready(attempt.worker_group)
        return attempt

    def _notify_ready(self, worker_group: str) -> None:
        event = self._ready_events.pop(worker_group, None)
        if event is not None:
            event.set()

    @staticmethod
    def _live_attempts(pipeline: Pipeline, activity_id: str | None = None) -> list[Attempt]:
        return [
            a
            for a in pipeline.attempts.values()
            if a.status in _LIVE and activity_id in (None, a.activity_id)
        ]

    def _task_object(self, pipeline: Pipeline, attempt: Attempt) -> dict[str, Any]:
        activity = pipeline.objects[attempt.activity_id]
        referenced = {
            f["refValue"]
            for f in activity["fields"]
            if "refValue" in f and f["refValue"] in pipeline.objects
        }
        objects = {attempt.attempt_id: attempt.as_object(), attempt.activity_id: activity}
        objects |= {ref: pipeline.objects[ref] for ref in sorted(referenced)}
        return {
            "taskId": attempt.task_id,
            "pipelineId": pipeline.pipeline_id,
            "attemptId": attempt.attempt_id,
            "objects": objects,
        }


# Operations that name a deleted pipeline "not found": the model lists no PipelineDeletedException.
_NO_DELETED_ERROR = frozenset({"DeletePipeline"})


def parse_duration(text: str) -> float:
    """Seconds in a Data Pipeline period such as ``"5 minutes"`` or ``"2 Hours"``."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a period such as '5 minutes'")
    return float(match.group(1)) * _SECONDS_PER_UNIT[match.group(2).lower()]


def _definition_errors(pipeline: Pipeline, objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    seen: set[str] = set()
    for obj in objects:
        problems = errors.setdefault(obj["id"], [])
        if obj["id"] in seen:
            problems.append(f"duplicate object id {obj['id']!r}")
        seen.add(obj["id"])
        for item in obj["fields"]:
            if ("stringValue" in item) == ("refValue" in item):
                problems.append(
                    f"field {item['key']!r} must have exactly one of stringValue, refValue"
                )
            elif "refValue" in item and item["refValue"] not in pipeline.objects:
                problems.append(
                    f"field {item['key']!r} refers to a missing object {item['refValue']!r}"
                )
    for activity_id in pipeline.activities():
        problems = errors.setdefault(activity_id, [])
        timeout = pipeline.field(activity_id, "reportProgressTimeout")
        if timeout is not None:
            try:
                parse_duration(timeout)
            except ValueError as error:
                problems.append(f"reportProgressTimeout: {error}")
        retries = pipeline.field(activity_id, "maximumRetries")
        if retries is not None and not (
            retries.isdigit() and int(retries) <= MAXIMUM_RETRIES_LIMIT
        ):
            problems.append(
                f"maximumRetries must be a whole number from 0 to {MAXIMUM_RETRIES_LIMIT}"
            )
    return {object_id: problems for object_id, problems in errors.items() if problems}
