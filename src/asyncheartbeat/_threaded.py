"""A sync boto3 client behind the async client protocol, called in worker threads.

aiobotocore runs on asyncio only. boto3's clients are thread-safe and block only the thread
that calls them, so running each call with `anyio.to_thread.run_sync` gives a client that
works on any anyio backend: trio as well as asyncio.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.to_thread

from ._datapipeline import client_config_defaults, pool_size

#: Threads at once for a client whose config names no pool size (botocore's default).
DEFAULT_THREADS = 10


class ThreadedClient:
    """A sync boto3 (or botocore) DataPipeline client, its calls run in worker threads.

    Give it to `Heartbeat` or `TaskRunner` on trio, where aiobotocore cannot run; it works
    on asyncio too. It offers the calls the library makes: ``report_task_progress``,
    ``poll_for_task``, ``set_task_status`` and ``report_task_runner_heartbeat``. At most as
    many calls are waited on at once as the client's connection pool holds.

    A call the library gives up on (at a deadline, or beside a second attempt that was
    answered first) is left to finish in its thread and its answer thrown away: a thread
    cannot be interrupted. Its place is free at once, so while the service is slow, more
    threads than the pool may run (botocore then opens connections beyond its pool);
    botocore's ``read_timeout`` bounds how long each lives.

    Example::

        client = boto3.client("datapipeline", config=ThreadedClient.config())
        async with Heartbeat(ThreadedClient(client), task_id) as hb:
            ...

    Args:
        client: A boto3 ``datapipeline`` client (``boto3.client("datapipeline")``), made
            with `ThreadedClient.config` so that botocore does not retry behind the
            library's back.
        limiter: Bounds the calls running at once (default: one per connection of the
            client's pool, ``max_pool_connections``).

    Raises:
        TypeError: ``client`` is an aiobotocore client (give it to the heartbeat as it is,
            on asyncio), or has no ``report_task_progress`` method.
    """

    def __init__(self, client: Any, *, limiter: anyio.CapacityLimiter | None = None) -> None:
        names = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(client).__mro__}
        if "aiobotocore.client.AioBaseClient" in names:
            raise TypeError(
                "client is an aiobotocore client, async already: on asyncio give it to the "
                "heartbeat as it is; ThreadedClient wraps a sync boto3 client "
                "(boto3.client('datapipeline'))"
            )
        if not callable(getattr(client, "report_task_progress", None)):
            raise TypeError(
                f"client is {type(client).__name__}, which has no report_task_progress "
                f"method: give a boto3 'datapipeline' client (boto3.client('datapipeline'))"
            )
        self.client = client
        #: The wrapped client's metadata: the reporter reads its pool size there.
        self.meta = getattr(client, "meta", None)
        self.limiter = limiter or anyio.CapacityLimiter(pool_size(client) or DEFAULT_THREADS)

    def __repr__(self) -> str:
        return f"<ThreadedClient of {type(self.client).__name__}>"

    @staticmethod
    def config(**overrides: Any) -> Any:
        """A botocore ``Config`` for the wrapped client: what `client_config` is for an
        aiobotocore client (no botocore retries, reads that outlast a long poll).

        Args:
            **overrides: botocore ``Config`` options that replace the defaults, such as
                ``max_pool_connections=20``.
        """
        from botocore.config import Config  # noqa: PLC0415 - only where a client is made

        return Config(**(client_config_defaults() | overrides))

    async def report_task_progress(
        self, *, taskId: str, fields: list[dict[str, str]]
    ) -> Mapping[str, Any]:
        """ReportTaskProgress, in a worker thread.

        Args:
            taskId: The task's id.
            fields: The progress fields, in the API's shape.
        """
        return await self._call("report_task_progress", taskId=taskId, fields=fields)

    async def poll_for_task(self, **params: Any) -> Mapping[str, Any]:
        """PollForTask, in a worker thread.

        Args:
            **params: The call's parameters (``workerGroup``, ``hostname`` …).
        """
        return await self._call("poll_for_task", **params)

    async def set_task_status(self, **params: Any) -> Mapping[str, Any]:
        """SetTaskStatus, in a worker thread.

        Args:
            **params: The call's parameters (``taskId``, ``taskStatus`` …).
        """
        return await self._call("set_task_status", **params)

    async def report_task_runner_heartbeat(self, **params: Any) -> Mapping[str, Any]:
        """ReportTaskRunnerHeartbeat, in a worker thread.

        Args:
            **params: The call's parameters (``taskrunnerId`` …).
        """
        return await self._call("report_task_runner_heartbeat", **params)

    async def _call(self, name: str, **params: Any) -> Mapping[str, Any]:
        method = getattr(self.client, name)
        response: Mapping[str, Any] = await anyio.to_thread.run_sync(
            functools.partial(method, **params), abandon_on_cancel=True, limiter=self.limiter
        )
        return response
