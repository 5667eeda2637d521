"""The task a reporter runs in, and the tasks it starts: one host per client and event loop,
started by its first lease.

No heartbeat owns the host, so it cannot live in a heartbeat's task group: it is a task of
the event loop's own (asyncio) or a system task (trio), which the loop ends as it closes.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import anyio.abc

# asyncio keeps only weak references to its tasks.
_running: set[asyncio.Task[Any]] = set()


class Tasks:
    """The tasks a reporter starts (a report, a second attempt), each ended by the scopes
    its lease keeps. On asyncio, plain tasks of the loop: an anyio task group's start_soon
    costs several times as much, once per report."""

    def __init__(self, group: anyio.abc.TaskGroup) -> None:
        self._group = group
        self._native: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        loop = asyncio._get_running_loop()
        if loop is None:
            self._group.start_soon(work, *args, name="asyncheartbeat:call")
            return
        task = loop.create_task(work(*args), name="asyncheartbeat:call")
        self._native.add(task)
        task.add_done_callback(self._native.discard)

    async def drain(self) -> None:
        """Wait for the tasks started on asyncio to end (the group waits for its own)."""
        while self._native:
            await asyncio.wait(set(self._native))


def start_host(serve: Callable[[], Awaitable[None]], done: anyio.Event) -> None:
    """Run ``serve()`` in a task of its own on the running event loop; ``done`` is set as
    it ends, however it ends."""
    loop = asyncio._get_running_loop()
    if loop is not None:
        task = loop.create_task(_run(serve, done), name="asyncheartbeat:reporter")
        _running.add(task)
        task.add_done_callback(_running.discard)
        return
    trio = sys.modules["trio"]
    trio.lowlevel.spawn_system_task(_run, serve, done, name="asyncheartbeat:reporter")


async def _run(serve: Callable[[], Awaitable[None]], done: anyio.Event) -> None:
    try:
        await serve()
    finally:
        done.set()
