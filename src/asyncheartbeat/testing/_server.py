"""A local Data Pipeline endpoint that real clients talk to over HTTP (JSON 1.1).

This is the task-runner half of the service that heartbeats need: tasks, ReportTaskProgress,
cancellation and removal from outside, scripted faults, and a record of every call.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from typing import Any

import anyio
from aiohttp import web

from ._faults import Fault, FaultKind, FaultPlan

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "DataPipeline."
MAX_BODY = 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One request the server received."""

    operation: str
    params: dict[str, Any]
    #: anyio clock time of arrival.
    received_at: float
    #: What the server did: "answered", "error:<Code>", "hang", "drop", "malformed".
    outcome: str

    @property
    def task_id(self) -> str | None:
        task_id = self.params.get("taskId")
        return task_id if isinstance(task_id, str) else None

    @property
    def fields(self) -> dict[str, str]:
        """The reported fields as ``{key: value}`` (string and ref values alike)."""
        return {
            field["key"]: field.get("stringValue", field.get("refValue", ""))
            for field in self.params.get("fields", [])
        }


@dataclasses.dataclass(slots=True)
class Task:
    """A task as the local service sees it."""

    task_id: str
    pipeline_id: str
    canceled: bool = False
    #: The latest value reported for each field.
    fields: dict[str, str] = dataclasses.field(default_factory=dict)


class ServiceError(Exception):
    """An answer in the service's error shape."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(code, message, status)
        self.code = code
        self.message = message
        self.status = status


class LocalDataPipeline:
    """A Data Pipeline endpoint on loopback, in-process: ``async with LocalDataPipeline() as dp``.

    Point a client at ``dp.url`` with any credentials. Tasks are created with `add_task`;
    `cancel_task`, `forget_task` and `delete_pipeline` change them from outside; `inject`
    scripts faults; `calls` records every request, and `wait_for_calls` waits for them.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self.tasks: dict[str, Task] = {}
        self.deleted_pipelines: set[str] = set()
        self.calls: list[Call] = []
        self._reports: dict[str, list[Call]] = {}
        self.faults = FaultPlan()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

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
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stopping.set()  # releases hung requests
        assert self._runner is not None
        await self._runner.cleanup()
        self._runner = None
        self._url = None

    # -- the outside world's moves --------------------------------------------------------

    def add_task(self, task_id: str | None = None, *, pipeline_id: str | None = None) -> str:
        """Create a task that a runner holds, as PollForTask would hand it out; return its id."""
        task_id = task_id or f"task-{uuid.uuid4().hex}"
        if task_id in self.tasks:
            raise ValueError(f"task {task_id!r} exists already")
        self.tasks[task_id] = Task(task_id, pipeline_id or f"df-{uuid.uuid4().hex[:20].upper()}")
        return task_id

    def cancel_task(self, task_id: str) -> None:
        """Cancel the task: its next report answers ``canceled: true``."""
        self._task(task_id).canceled = True

    def forget_task(self, task_id: str) -> None:
        """Drop the task, as when it was reassigned: its reports get TaskNotFoundException."""
        del self.tasks[self._task(task_id).task_id]

    def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete a pipeline: reports for its tasks get PipelineDeletedException."""
        self.deleted_pipelines.add(pipeline_id)

    def inject(
        self,
        fault: Fault,
        *,
        operation: str | None = "ReportTaskProgress",
        task_id: str | None = None,
        times: int | None = 1,
    ) -> None:
        """Answer the next ``times`` matching calls (None: every one) with ``fault``."""
        self.faults.add(fault, operation=operation, task_id=task_id, times=times)

    def _task(self, task_id: str) -> Task:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise KeyError(f"no task {task_id!r} on this local Data Pipeline") from None

    # -- reading back -------------------------------------------------------------------------

    def reports(self, task_id: str) -> list[Call]:
        """The ReportTaskProgress calls received for ``task_id``, in order of arrival."""
        return list(self._reports.get(task_id, ()))

    async def wait_for_calls(self, predicate: Callable[[list[Call]], bool]) -> list[Call]:
        """Wait until ``predicate(calls)`` holds; guard it with a timeout of your own."""
        while not predicate(self.calls):
            await self._call_arrived.wait()
        return self.calls

    async def wait_for_reports(self, task_id: str, count: int) -> list[Call]:
        """Wait until ``count`` reports for ``task_id`` have arrived, and return them all."""
        while len(reports := self._reports.get(task_id, ())) < count:
            await self._call_arrived.wait()
        return list(reports)

    # -- the wire -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            operation, params = await self._read_request(request)
            fault = self.faults.take(operation, params.get("taskId"))
            self._record(operation, params, _outcome(fault))
            if fault is not None and (response := await self._misbehave(request, fault)):
                return response
            return _json_response(200, self._dispatch(operation, params))
        except ServiceError as error:
            return _error_response(error)

    def _dispatch(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ReportTaskProgress": self._report_task_progress,
        }
        if operation not in operations:
            raise ServiceError(
                "UnknownOperationException", f"{operation} is not supported by this server"
            )
        return operations[operation](params)

    async def _read_request(self, request: web.Request) -> tuple[str, dict[str, Any]]:
        if request.method != "POST" or request.path != "/":
            raise ServiceError("UnknownOperationException", "requests are POST /", 404)
        target = request.headers.get("X-Amz-Target", "")
        if not target.startswith(TARGET_PREFIX):
            raise ServiceError("UnknownOperationException", f"unknown target {target!r}")
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
        except (ValueError, web.HTTPRequestEntityTooLarge) as error:
            raise ServiceError(
                "SerializationException", f"body is not valid JSON: {error}"
            ) from None
        if not isinstance(params, dict):
            raise ServiceError("SerializationException", "body must be a JSON object")
        return target.removeprefix(TARGET_PREFIX), params

    def _record(self, operation: str, params: dict[str, Any], outcome: str) -> None:
        call = Call(operation, params, anyio.current_time(), outcome)
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
        # HANG waits until the server stops; DELAY as long as it says.
        with anyio.move_on_after(fault.seconds if fault.kind is FaultKind.DELAY else None):
            await self._stopping.wait()
        return web.Response(status=503) if fault.kind is FaultKind.HANG else None

    # -- operations -----------------------------------------------------------------------------

    def _report_task_progress(self, params: dict[str, Any]) -> dict[str, Any]:
        task_id = params.get("taskId")
        task = self.tasks.get(task_id) if isinstance(task_id, str) else None
        if task is None:
            raise ServiceError("TaskNotFoundException", f"task {task_id!r} not found")
        if task.pipeline_id in self.deleted_pipelines:
            raise ServiceError(
                "PipelineDeletedException", f"pipeline {task.pipeline_id} was deleted"
            )
        for field in params.get("fields", []):
            task.fields[field["key"]] = field.get("stringValue", field.get("refValue", ""))
        return {"canceled": task.canceled}


def _outcome(fault: Fault | None) -> str:
    if fault is None or fault.kind is FaultKind.DELAY:
        return "answered"
    if fault.kind is FaultKind.ERROR:
        return f"error:{fault.code}"
    return fault.kind.value


def _json_response(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=CONTENT_TYPE)


def _error_response(error: ServiceError) -> web.Response:
    return _json_response(error.status, {"__type": error.code, "message": error.message})
