"""An in-memory client for timing tests: no wire, any async backend, virtual time welcome."""

from __future__ import annotations

import contextlib
import inspect
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias

import anyio

from ._emulator.recording import Call

Handler: TypeAlias = Callable[
    [str, list[dict[str, str]]], Mapping[str, Any] | Awaitable[Mapping[str, Any]]
]


class MockServiceError(Exception):
    """An error answer in the shape botocore gives it (``exc.response["Error"]["Code"]``).

    Raise it from a `MockClient` handler.

    Args:
        code: The error code, such as ``"InternalServiceError"``.
        message: The error message.
        status: The HTTP status.

    Attributes:
        response: ``{"Error": {"Code": ..., "Message": ...}, "ResponseMetadata":
            {"HTTPStatusCode": ...}}``, as botocore's ``ClientError`` has it.
    """

    def __init__(self, code: str, message: str = "", status: int = 400) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.response: dict[str, Any] = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }


class MockClient:
    """A ReportTaskProgress client whose answers come from ``handler(task_id, fields)``.

    The handler returns the response (``{"canceled": False}``), awaits if it likes (to
    model latency or a hang), or raises (`MockServiceError` for a service error). Every
    call is recorded in `calls` with its anyio clock time, before the handler runs.

    With ``max_pool_connections``, the client behaves like aiobotocore's with that pool: at
    most that many calls reach the handler at once, the others wait in line for one, and
    the size is found where botocore keeps it (``client.meta.config``).

    Args:
        handler: ``handler(task_id, fields)``, sync or async, returning the answer. Default:
            ``{"canceled": False}`` to every report.
        max_pool_connections: Model a client with this many connections.

    Attributes:
        calls: Every report received, as a `Call`, in order.
    """

    def __init__(
        self, handler: Handler | None = None, *, max_pool_connections: int | None = None
    ) -> None:
        self._handler: Handler = handler or (lambda task_id, fields: {"canceled": False})
        self.calls: list[Call] = []
        self._pool: contextlib.AbstractAsyncContextManager[object] = contextlib.nullcontext()
        if max_pool_connections is not None:
            self._pool = anyio.Semaphore(max_pool_connections)
            config = types.SimpleNamespace(max_pool_connections=max_pool_connections)
            self.meta = types.SimpleNamespace(config=config)

    async def report_task_progress(
        self, *, taskId: str, fields: list[dict[str, str]]
    ) -> Mapping[str, Any]:
        """Record the report and answer it with the handler.

        Args:
            taskId: The task.
            fields: The progress fields, in the API's shape.

        Returns:
            What the handler returned.
        """
        params = {"taskId": taskId, "fields": [dict(field) for field in fields]}
        async with self._pool:
            self.calls.append(Call("ReportTaskProgress", params, anyio.current_time(), "answered"))
            result = self._handler(taskId, fields)
            if inspect.isawaitable(result):
                result = await result
            return result
