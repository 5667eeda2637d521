"""The wire: HTTP, JSON 1.1 and the signature check, in front of the operations table.

A request is checked for its shape, then met by the call limits or an injected fault, or
checked against botocore's model and answered from the operations table. Every one is
recorded. ``POST /_emulator/<move>`` is the control endpoint, which makes a move of the
table.
"""

from __future__ import annotations

import json
import logging
import math
from typing import TYPE_CHECKING, Any

import anyio
from aiohttp import web

from asyncheartbeat._log import fields
from asyncheartbeat.testing._errors import ServiceError
from asyncheartbeat.testing._faults import Fault, FaultKind
from asyncheartbeat.testing._validation import operation_names, validate_request

from . import moves, operations
from .control import CONTROL_PREFIX
from .recording import outcome

if TYPE_CHECKING:
    from .front import LocalDataPipeline

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "DataPipeline."
#: The largest request body served; the service's own limits are far below it.
MAX_BODY = 1024 * 1024
#: The header of a throttled answer that says, in milliseconds, when to try again.
RETRY_AFTER = "x-amz-retry-after"

logger = logging.getLogger("asyncheartbeat.emulator")


class Wire:
    """Serves ``dp`` over HTTP on ``host``:``port`` while entered."""

    def __init__(self, dp: LocalDataPipeline, *, log_requests: bool) -> None:
        self._dp = dp
        self._log_requests = log_requests
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> str:
        """Serve; the URL."""
        self.stopping = anyio.Event()
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A request whose client went away is cancelled, so no long poll outlives its caller.
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, handler_cancellation=True
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=4096)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        return f"http://{bound_host}:{bound_port}"

    async def stop(self) -> None:
        self.stopping.set()  # releases hung requests
        self._dp.service.wake_pollers()
        assert self._runner is not None
        await self._runner.cleanup()
        self._runner = None

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
        dp = self._dp
        try:
            operation, params = await _read_request(request)
            read["params"] = params
            received_at = anyio.current_time()
            if not dp._rate_limiter.allows(operation, received_at):
                dp._record(operation, params, "error:ThrottlingException", received_at)
                wait = dp._rate_limiter.next_token_in(operation, received_at)
                throttled = _error_response(ServiceError("ThrottlingException", "Rate exceeded"))
                # Milliseconds, rounded up: a client that waits that long finds a token.
                throttled.headers[RETRY_AFTER] = str(math.ceil(wait * 1000))
                return throttled
            fault = dp.faults.take(operation, params.get("taskId"), self._pipeline_of(params))
            dp._record(operation, params, outcome(fault), received_at)
            if fault is not None and (response := await self._misbehave(request, fault)):
                return response
            validate_request(operation, params)
            now = anyio.current_time()
            dp.service.expire(now)
            answer = await operations.answer(dp.service, operation, params, now, self.stopping)
            return _json_response(200, answer)
        except ServiceError as error:
            return _error_response(error)

    def _pipeline_of(self, params: dict[str, Any]) -> str | None:
        if isinstance(pipeline_id := params.get("pipelineId"), str):
            return pipeline_id
        attempt = self._dp.service.handed_out.get(params.get("taskId"))  # type: ignore[arg-type]
        return attempt.pipeline_id if attempt else None

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
            await self.stopping.wait()
        return web.Response(status=503) if fault.kind is FaultKind.HANG else None

    async def _control(self, request: web.Request) -> web.Response:
        command = request.path.removeprefix(CONTROL_PREFIX)
        try:
            args = json.loads(await request.read() or b"{}")
            if command == "wait_for_calls":  # the long poll behind EmulatorProcess's waits
                result = await self._dp._wait_for_more_calls(**args)
            else:
                result = moves.run(self._dp, command, args)
        except (KeyError, ValueError, TypeError, ServiceError) as error:
            return web.json_response({"error": f"{type(error).__name__}: {error}"}, status=400)
        return web.json_response({"result": result})


async def _read_request(request: web.Request) -> tuple[str, dict[str, Any]]:
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
        raise ServiceError("SerializationException", f"body is not valid JSON: {error}") from None
    if not isinstance(params, dict):
        raise ServiceError("SerializationException", "body must be a JSON object")
    return operation, params


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


def _json_response(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=CONTENT_TYPE)


def _error_response(error: ServiceError) -> web.Response:
    return _json_response(error.status, {"__type": error.code, "message": error.message})
