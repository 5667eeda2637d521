"""The task a reporter runs in: one per client and event loop, started by its first lease.

No heartbeat owns it, so it cannot live in a heartbeat's task group: it is a task of the
event loop's own (asyncio) or a system task (trio), which the loop ends as it closes.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import anyio

# asyncio keeps only weak references to its tasks.
_running: set[asyncio.Task[None]] = set()


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
