"""Reaching an event loop from another thread."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import anyio
import anyio.lowlevel


def run_soon_on(loop: anyio.lowlevel.EventLoopToken, fn: Callable[[], object]) -> None:
    """Run ``fn`` on ``loop`` as soon as it runs, from any thread, without waiting for it;
    nothing if the loop has ended."""
    with contextlib.suppress(anyio.RunFinishedError):
        loop.backend_class.run_sync_soon(fn, (), loop.native_token)
