"""A local Data Pipeline that real clients talk to over HTTP (JSON 1.1), unchanged.

Requests are checked against botocore's own model, served by `DataPipelineService`, and may
be met by the service's call limits or by scripted faults instead. Everything received is
recorded. A control endpoint (``POST /_emulator/<command>``) offers the Python API to
another process.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
from aiohttp import web

from asyncheartbeat._log import fields

from ._errors import ServiceError
from ._faults import Fault, FaultKind, FaultPlan
from ._limits import RateLimit, RateLimiter, RateLimits, resolve_rate_limits
from ._service import Attempt, DataPipelineService, Pipeline, Timeouts
from ._validation import operation_names, validate_request

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "DataPipeline."
#: The largest request body served; the service's own limits are far below it.
MAX_BODY = 1024 * 1024
CONTROL_PREFIX = "/_emulator/"
#: The header of a throttled answer that says, in milliseconds, when to try again.
RETRY_AFTER = "x-amz-retry-after"
#: The worker group of tasks made with `LocalDataPipeline.add_task`.
DEFAULT_WORKER_GROUP = "asyncheartbeat"

logger = logging.getLogger("asyncheartbeat.emulator")


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One request the server received.

    Attributes:
        operation: The API operation, such as ``"PollForTask"``.
        params: The request's parameters, as sent.
        received_at: The anyio clock time of arrival.
        outcome: What the server did: ``"answered"``, ``"delay"`` (answered late),
            ``"error:<Code>"``, ``"hang"``, ``"drop"``, ``"malformed"``, ``"answer"``.
    """

    operation: str
    params: dict[str, Any]
    #: anyio clock time of arrival.
    received_at: float
    #: What the server did: "answered", "delay" (answered late), "error:<Code>", "hang",
    #: "drop", "malformed", "answer".
    outcome: str

    @property
    def task_id(self) -> str | None:
        """The call's ``taskId``, if it has one."""
        task_id = self.params.get("taskId")
        return task_id if isinstance(task_id, str) else None

    @property
    def fields(self) -> dict[str, str]:
        """The reported fields as ``{key: value}`` (string and ref values alike)."""
        return {
            field["key"]: field.get("stringValue", field.get("refValue", ""))
            for field in self.params.get("fields", [])
        }

    def to_json(self) -> dict[str, Any]:
        """The call as JSON, as `EmulatorProcess` receives it."""
        return dataclasses.asdict(self)


class LocalDataPipeline:
    """A Data Pipeline endpoint on loopback, in-process: ``async with LocalDataPipeline() as dp``.

    Point any client at ``dp.url`` with any credentials. Every duration of the service can be
    shortened so that tests run in seconds. `add_task` makes a task a runner holds in one
    call; `cancel_task`, `forget_task`, `delete_pipeline` and `set_terminate` act from the
    outside; `inject` scripts faults; `calls` records every request.

    ``rate_limits`` answers ThrottlingException beyond the service's call limits: None or
    False for none, True for the documented ones, or ``{operation: RateLimit(rate, burst)}``
    to limit exactly those operations. ``log_requests`` logs one INFO line per request on
    the ``asyncheartbeat.emulator`` logger (operation, status, latency, task id, also as
    ``hb_*`` attributes).

    ```python
    async with LocalDataPipeline(poll_timeout=1) as dp:
        pipeline_id = dp.add_pipeline(worker_group="wg", maximum_retries=1)
    ```

    What it emulates, rule by rule: [The local Data Pipeline](../local-data-pipeline.md).

    Args:
        host: The address to listen on.
        port: The port; 0 for a free one (read `url`).
        ack_timeout: Seconds a task handed out may wait for its acknowledgement before it
            goes to the next poller (the service's 2 minutes).
        report_timeout: Seconds an acknowledged task may go without a report, unless its
            activity's ``reportProgressTimeout`` says otherwise (the service's 5 minutes).
        poll_timeout: Seconds PollForTask holds a call when no task is ready, then answers
            ``{}`` (the service's 90 s). Shorten it so that empty polls come quickly.
        seed: Seeds the faults drawn by probability, so that a run repeats itself.
        record_calls: Keep every call in `calls`; False keeps memory flat in long load
            runs.
        rate_limits: The call limits to apply, as above.
        log_requests: Log one line per request, as above.

    Raises:
        ValueError: A duration that is not above 0, or a rate limit for an unknown
            operation.
        TypeError: ``rate_limits`` is none of the forms above.

    Attributes:
        service: The emulated service's state (``service.timeouts`` are its `Timeouts`).
        faults: The faults injected, in the order they are consulted.
        calls: Every call received, as a `Call`, in order of arrival.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ack_timeout: float = Timeouts.ack,
        report_timeout: float = Timeouts.report,
        poll_timeout: float = Timeouts.poll,
        seed: int | None = None,
        record_calls: bool = True,
        rate_limits: RateLimits = None,
        log_requests: bool = False,
    ) -> None:
        self._log_requests = log_requests
        self._rate_limiter = RateLimiter(resolve_rate_limits(rate_limits))
        self._host = host
        self._port = port
        self.service = DataPipelineService(Timeouts(ack_timeout, report_timeout, poll_timeout))
        self.faults = FaultPlan(seed)
        self.calls: list[Call] = []
        self._record_calls = record_calls
        self._reports: dict[str, list[Call]] = {}
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def rate_limits(self) -> Mapping[str, RateLimit]:
        """The limit of each limited operation; operations not named are not limited."""
        return self._rate_limiter.limits

    @property
    def url(self) -> str:
        """The endpoint URL, for ``endpoint_url=``."""
        if self._url is None:
            raise RuntimeError("the local Data Pipeline is not running: use `async with`")
        return self._url

    async def __aenter__(self) -> LocalDataPipeline:
        self._call_arrived = anyio.Event()
        self._stopping = anyio.Event()
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A request whose client went away is cancelled, so no long poll outlives its caller.
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, handler_cancellation=True
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port, backlog=4096)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stopping.set()  # releases hung requests
        self.service.wake_pollers()
        assert self._runner is not None
        await self._runner.cleanup()
        self._runner = None
        self._url = None

    # -- the outside world's moves --------------------------------------------------------

    def add_pipeline(
        self,
        *,
        worker_group: str = DEFAULT_WORKER_GROUP,
        command: str = "true",
        report_progress_timeout: str | None = None,
        maximum_retries: int | None = None,
        fields: Sequence[Mapping[str, str]] = (),
    ) -> str:
        """Make a one-activity pipeline and activate it: its task is ready for the next
        poller of ``worker_group``.

        Args:
            worker_group: The worker group whose poller gets the task.
            command: The ShellCommandActivity's ``command``.
            report_progress_timeout: The activity's ``reportProgressTimeout``, such as
                ``"10 minutes"``; None for the service's 5 minutes.
            maximum_retries: The activity's ``maximumRetries``: attempts made after FAILED
                (None: 2, as the service says).
            fields: More fields of the activity, in the API's shape, such as
                ``{"key": "scriptArgument", "stringValue": "2026-11-22"}``.

        Returns:
            The pipeline id.

        Raises:
            ValueError: The options make a definition the service would refuse.
        """
        name = f"task-{uuid.uuid4().hex[:12]}"
        pipeline_id = self.service.create_pipeline(name, name)
        activity = [
            {"key": "type", "stringValue": "ShellCommandActivity"},
            {"key": "command", "stringValue": command},
            {"key": "workerGroup", "stringValue": worker_group},
        ]
        if report_progress_timeout is not None:
            activity.append(
                {"key": "reportProgressTimeout", "stringValue": report_progress_timeout}
            )
        if maximum_retries is not None:
            activity.append({"key": "maximumRetries", "stringValue": str(maximum_retries)})
        activity += [dict(field) for field in fields]
        result = self.service.put_definition(
            pipeline_id, [{"id": "Activity", "name": "Activity", "fields": activity}], [], []
        )
        if result["errored"]:
            raise ValueError(f"bad task options: {result['validationErrors']}")
        self.service.activate(pipeline_id)
        return pipeline_id

    def add_task(
        self,
        task_id: str | None = None,
        *,
        worker_group: str = DEFAULT_WORKER_GROUP,
        report_progress_timeout: str | None = None,
        maximum_retries: int | None = None,
    ) -> str:
        """Make a one-activity pipeline, activate it, and hand its task out as PollForTask
        would, for tests that do not care about pipelines or polls.

        Args:
            task_id: The task id to hand it out under; None for a new one.
            worker_group: The activity's worker group.
            report_progress_timeout: As for `add_pipeline`.
            maximum_retries: As for `add_pipeline`.

        Returns:
            The task id.
        """
        pipeline_id = self.add_pipeline(
            worker_group=worker_group,
            report_progress_timeout=report_progress_timeout,
            maximum_retries=maximum_retries,
        )
        task = self.service.take_task(
            worker_group,
            "localhost",
            anyio.current_time(),
            task_id=task_id,
            pipeline_id=pipeline_id,
        )
        assert task is not None
        return str(task["taskId"])

    def attempt(self, task_id: str) -> Attempt:
        """The attempt ``task_id`` was handed out for, as of now (a lease that ran out since
        the last call shows as TIMEDOUT).

        Args:
            task_id: A task id this server handed out.

        Returns:
            The attempt: its status, fields, pipeline and errors.

        Raises:
            KeyError: No such task was handed out here.
        """
        self.service.expire(anyio.current_time())
        try:
            return self.service.handed_out[task_id]
        except KeyError:
            raise KeyError(f"no task {task_id!r} was handed out here") from None

    def cancel_task(self, task_id: str) -> None:
        """Cancel the task's attempt (SetStatus CANCEL): its next report answers canceled.

        Args:
            task_id: A task id this server handed out.
        """
        attempt = self.attempt(task_id)
        self.service.set_status(attempt.pipeline_id, [attempt.attempt_id], "CANCEL")

    def forget_task(self, task_id: str) -> None:
        """Take the task back as a reassignment does: its reports get TaskNotFoundException.

        Args:
            task_id: A task id this server handed out.
        """
        self.service.forget(task_id)

    def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete a pipeline: reports for its tasks get PipelineDeletedException.

        Args:
            pipeline_id: The pipeline.
        """
        self.service.delete(pipeline_id)

    def set_terminate(self, terminate: bool = True, *, taskrunner_id: str | None = None) -> None:
        """Say what ReportTaskRunnerHeartbeat answers, for every runner or for one.

        Args:
            terminate: The ``terminate`` to answer.
            taskrunner_id: The runner it is for; None for every runner.
        """
        if taskrunner_id is None:
            self.service.terminate_all = terminate
        elif terminate:
            self.service.terminate_runners.add(taskrunner_id)
        else:
            self.service.terminate_runners.discard(taskrunner_id)

    def inject(
        self,
        fault: Fault,
        *,
        operation: str | None = "ReportTaskProgress",
        task_id: str | None = None,
        pipeline_id: str | None = None,
        times: int | None = 1,
        probability: float = 1.0,
        every: int = 1,
    ) -> None:
        """Meet matching calls with ``fault``. Faults are consulted in the order they were
        added.

        Args:
            fault: What to do instead of answering.
            operation: The operation it meets; None for any.
            task_id: The task whose calls it meets; None for any.
            pipeline_id: The pipeline whose tasks' calls it meets; None for any.
            times: How many matching calls it meets; None for all of them.
            probability: The chance that it meets each matching call, drawn from the
                server's ``seed``.
            every: Meet only every n-th matching call (the n-th, the 2n-th ...); the
                others are answered as if it were not there.
        """
        self.faults.add(
            fault,
            operation=operation,
            task_id=task_id,
            pipeline_id=pipeline_id,
            times=times,
            probability=probability,
            every=every,
        )

    # -- reading back -------------------------------------------------------------------------

    def reports(self, task_id: str) -> list[Call]:
        """The ReportTaskProgress calls received for a task, in order of arrival.

        Args:
            task_id: The task.

        Returns:
            The calls.
        """
        return list(self._reports.get(task_id, ()))

    async def wait_for_calls(self, predicate: Callable[[list[Call]], bool]) -> list[Call]:
        """Wait until ``predicate(calls)`` holds; guard it with a timeout of your own.

        Args:
            predicate: Called with `calls` as each call arrives.

        Returns:
            `calls`, once it holds.
        """
        while not predicate(self.calls):
            await self._call_arrived.wait()
        return self.calls

    async def wait_for_reports(self, task_id: str, count: int) -> list[Call]:
        """Wait until ``count`` reports for a task have arrived; guard it with a timeout.

        Args:
            task_id: The task.
            count: How many reports to wait for.

        Returns:
            All its reports so far.
        """
        while len(reports := self._reports.get(task_id, ())) < count:
            await self._call_arrived.wait()
        return list(reports)

    # -- the wire -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not self._log_requests:
            return await self._serve(request, {})
        started = anyio.current_time()
        response: web.StreamResponse | None = None
        read: dict[str, Any] = {}
        try:
            response = await self._serve(request, read)
        finally:
            _log_request(request, read.get("params"), response, anyio.current_time() - started)
        return response

    async def _serve(self, request: web.Request, read: dict[str, Any]) -> web.StreamResponse:
        """Answer ``request``; its parsed body goes to ``read["params"]``, for its log line."""
        if request.path.startswith(CONTROL_PREFIX):
            return await self._control(request)
        try:
            operation, params = await self._read_request(request)
            read["params"] = params
            received_at = anyio.current_time()
            if not self._rate_limiter.allows(operation, received_at):
                self._record(operation, params, "error:ThrottlingException", received_at)
                wait = self._rate_limiter.next_token_in(operation, received_at)
                throttled = _error_response(ServiceError("ThrottlingException", "Rate exceeded"))
                # Milliseconds, rounded up: a client that waits that long finds a token.
                throttled.headers[RETRY_AFTER] = str(math.ceil(wait * 1000))
                return throttled
            fault = self.faults.take(operation, params.get("taskId"), self._pipeline_of(params))
            self._record(operation, params, _outcome(fault), received_at)
            if fault is not None and (response := await self._misbehave(request, fault)):
                return response
            validate_request(operation, params)
            now = anyio.current_time()
            self.service.expire(now)
            if operation == "PollForTask":
                return _json_response(200, await self._poll_for_task(params, now))
            return _json_response(200, self._dispatch(operation, params, now))
        except ServiceError as error:
            return _error_response(error)

    async def _read_request(self, request: web.Request) -> tuple[str, dict[str, Any]]:
        if request.method != "POST" or request.path != "/":
            raise ServiceError("UnknownOperationException", "requests are POST /", 404)
        target = request.headers.get("X-Amz-Target", "")
        operation = target.removeprefix(TARGET_PREFIX)
        if not target.startswith(TARGET_PREFIX) or operation not in operation_names():
            raise ServiceError("UnknownOperationException", f"unknown operation {target!r}")
        if request.content_type != CONTENT_TYPE:
            raise ServiceError(
                "SerializationException",
                f"content type must be {CONTENT_TYPE}, not {request.content_type!r}",
            )
        if not request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 "):
            raise ServiceError(
                "MissingAuthenticationTokenException", "request is missing a SigV4 signature", 403
            )
        try:
            params = json.loads(await request.read() or b"{}")
        except web.HTTPRequestEntityTooLarge:
            raise ServiceError(
                "SerializationException", f"request body over {MAX_BODY} bytes", 413
            ) from None
        except ValueError as error:
            raise ServiceError(
                "SerializationException", f"body is not valid JSON: {error}"
            ) from None
        if not isinstance(params, dict):
            raise ServiceError("SerializationException", "body must be a JSON object")
        return operation, params

    def _pipeline_of(self, params: dict[str, Any]) -> str | None:
        if isinstance(pipeline_id := params.get("pipelineId"), str):
            return pipeline_id
        attempt = self.service.handed_out.get(params.get("taskId"))  # type: ignore[arg-type]
        return attempt.pipeline_id if attempt else None

    def _record(
        self, operation: str, params: dict[str, Any], outcome: str, received_at: float
    ) -> None:
        call = Call(operation, params, received_at, outcome)
        if self._record_calls:
            self.calls.append(call)
            if operation == "ReportTaskProgress" and call.task_id is not None:
                self._reports.setdefault(call.task_id, []).append(call)
        self._call_arrived.set()
        self._call_arrived = anyio.Event()

    async def _misbehave(self, request: web.Request, fault: Fault) -> web.Response | None:
        """Act out ``fault``: the response to send instead, or None to answer normally after it."""
        if fault.kind is FaultKind.ERROR:
            raise ServiceError(fault.code, fault.message, fault.status)
        if fault.kind is FaultKind.DROP:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=503)  # never sent: the connection is gone
        if fault.kind is FaultKind.MALFORMED:
            return web.Response(status=200, body=b"{not json", content_type=CONTENT_TYPE)
        if fault.kind is FaultKind.ANSWER:
            return _json_response(200, fault.body)
        # HANG waits until the server stops; DELAY as long as it says.
        with anyio.move_on_after(fault.seconds if fault.kind is FaultKind.DELAY else None):
            await self._stopping.wait()
        return web.Response(status=503) if fault.kind is FaultKind.HANG else None

    async def _poll_for_task(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        worker_group, hostname = params["workerGroup"], params.get("hostname")
        give_up_at = now + self.service.timeouts.poll
        while True:
            task = self.service.take_task(worker_group, hostname, now)
            if task is not None:
                return {"taskObject": task}
            if now >= give_up_at or self._stopping.is_set():
                return {}
            # Wake for a new task, or when a lease runs out and may hand one back.
            lease_ends = self.service.next_deadline()
            wake_at = give_up_at if lease_ends is None else min(give_up_at, lease_ends)
            with anyio.CancelScope(deadline=wake_at):
                await self.service.ready_event(worker_group).wait()
            now = anyio.current_time()
            self.service.expire(now)

    def _dispatch(self, operation: str, params: dict[str, Any], now: float) -> dict[str, Any]:
        handler = getattr(self, f"_op_{operation}", None)
        if handler is None:
            raise ServiceError(
                "InvalidRequestException",
                f"{operation} is not emulated by this local Data Pipeline",
            )
        result: dict[str, Any] = handler(params, now)
        return result

    # One method per emulated operation, named after it: params in, answer out.

    def _op_CreatePipeline(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        pipeline_id = self.service.create_pipeline(
            params["name"], params["uniqueId"], params.get("description", ""), params.get("tags")
        )
        return {"pipelineId": pipeline_id}

    def _op_PutPipelineDefinition(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        return self.service.put_definition(
            params["pipelineId"],
            params["pipelineObjects"],
            params.get("parameterObjects", []),
            params.get("parameterValues", []),
        )

    def _op_ValidatePipelineDefinition(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        return self.service.put_definition(
            params["pipelineId"],
            params["pipelineObjects"],
            params.get("parameterObjects", []),
            params.get("parameterValues", []),
            save=False,
        )

    def _op_GetPipelineDefinition(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        pipeline = self.service.pipeline(params["pipelineId"], "GetPipelineDefinition")
        return {
            "pipelineObjects": list(pipeline.objects.values()),
            "parameterObjects": pipeline.parameter_objects,
            "parameterValues": pipeline.parameter_values,
        }

    def _op_ActivatePipeline(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        self.service.activate(params["pipelineId"])
        return {}

    def _op_DeactivatePipeline(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        self.service.deactivate(params["pipelineId"], params.get("cancelActive", True))
        return {}

    def _op_DeletePipeline(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        self.service.delete(params["pipelineId"])
        return {}

    def _op_ListPipelines(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        listed = [p for p in self.service.pipelines.values() if not p.deleted]
        return {
            "pipelineIdList": [{"id": p.pipeline_id, "name": p.name} for p in listed],
            "hasMoreResults": False,
        }

    def _op_DescribePipelines(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        pipelines = [self.service.pipeline(i, "DescribePipelines") for i in params["pipelineIds"]]
        return {"pipelineDescriptionList": [_describe_pipeline(p) for p in pipelines]}

    def _op_DescribeObjects(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        pipeline = self.service.pipeline(params["pipelineId"], "DescribeObjects")
        objects = []
        for object_id in params["objectIds"]:
            if object_id in pipeline.attempts:
                objects.append(pipeline.attempts[object_id].as_object())
            elif object_id in pipeline.objects:
                objects.append(pipeline.objects[object_id])
        return {"pipelineObjects": objects, "hasMoreResults": False}

    def _op_QueryObjects(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        pipeline = self.service.pipeline(params["pipelineId"], "QueryObjects")
        # The query's selectors are not emulated: every object of the sphere is listed.
        spheres = {"COMPONENT": pipeline.objects}
        return {
            "ids": list(spheres.get(params["sphere"], pipeline.attempts)),
            "hasMoreResults": False,
        }

    def _op_SetStatus(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        self.service.set_status(params["pipelineId"], params["objectIds"], params["status"])
        return {}

    def _op_ReportTaskProgress(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        fields = params.get("fields", [])
        return {"canceled": self.service.report_progress(params["taskId"], fields, now)}

    def _op_SetTaskStatus(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        self.service.set_task_status(
            params["taskId"],
            params["taskStatus"],
            params.get("errorId"),
            params.get("errorMessage"),
            params.get("errorStackTrace"),
        )
        return {}

    def _op_ReportTaskRunnerHeartbeat(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        return {"terminate": self.service.runner_heartbeat(params, now)}

    # -- control, for a server in another process ------------------------------------------------

    async def _control(self, request: web.Request) -> web.Response:
        command = request.path.removeprefix(CONTROL_PREFIX)
        try:
            args = json.loads(await request.read() or b"{}")
            if command == "wait_for_calls":
                result = await self._wait_for_more_calls(**args)
            else:
                result = self._run_control(command, args)
        except (KeyError, ValueError, TypeError, ServiceError) as error:
            return web.json_response({"error": f"{type(error).__name__}: {error}"}, status=400)
        return web.json_response({"result": result})

    async def _wait_for_more_calls(self, after: int, longest: float) -> int:
        """Wait (up to ``longest`` seconds) until more than ``after`` calls were received;
        return how many there are: a long poll, for a client in another process."""
        with anyio.move_on_after(longest):
            while len(self.calls) <= after:
                await self._call_arrived.wait()
        return len(self.calls)

    def _run_control(self, command: str, args: dict[str, Any]) -> Any:
        match command:
            case "add_task" | "add_pipeline":
                return getattr(self, command)(**args)
            case "cancel_task" | "forget_task" | "delete_pipeline" | "set_terminate":
                getattr(self, command)(**args)
                return None
            case "inject":
                self.inject(Fault.from_json(args.pop("fault")), **args)
                return None
            case "clear_faults":
                self.faults.clear()
                return None
            case "calls":
                return [call.to_json() for call in self.calls]
            case "attempt":
                attempt = self.attempt(args["task_id"])
                return {**attempt.as_object(), "pipelineId": attempt.pipeline_id}
        raise ValueError(f"unknown control command {command!r}")


def _log_request(
    request: web.Request, params: object, response: web.StreamResponse | None, latency: float
) -> None:
    """One line for one request: what was asked, what was answered, how long it took."""
    if request.path.startswith(CONTROL_PREFIX):
        operation = request.path.removeprefix("/")
    else:
        operation = request.headers.get("X-Amz-Target", "").removeprefix(TARGET_PREFIX) or "-"
    task_id = params.get("taskId") if isinstance(params, dict) else None
    task_id = task_id if isinstance(task_id, str) else None
    status = response.status if response is not None else None
    logger.info(
        "%s %s %.1f ms%s", operation, status if status is not None else "(no answer: the "
        "client went away)", latency * 1000, f" task {task_id!r}" if task_id else "",
        extra=fields(
            "request", operation=operation, status=status, latency=latency, task_id=task_id
        ),
    )  # fmt: skip


def _describe_pipeline(pipeline: Pipeline) -> dict[str, Any]:
    fields = [
        {"key": "name", "stringValue": pipeline.name},
        {"key": "uniqueId", "stringValue": pipeline.unique_id},
        {"key": "@pipelineState", "stringValue": pipeline.state},
        {"key": "@id", "stringValue": pipeline.pipeline_id},
        {"key": "@sphere", "stringValue": "PIPELINE"},
    ]
    description = {"pipelineId": pipeline.pipeline_id, "name": pipeline.name, "fields": fields}
    if pipeline.description:
        description["description"] = pipeline.description
    if pipeline.tags:
        description["tags"] = pipeline.tags
    return description


def _outcome(fault: Fault | None) -> str:
    if fault is None:
        return "answered"
    if fault.kind is FaultKind.ERROR:
        return f"error:{fault.code}"
    return fault.kind.value


def _json_response(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=CONTENT_TYPE)


def _error_response(error: ServiceError) -> web.Response:
    return _json_response(error.status, {"__type": error.code, "message": error.message})
