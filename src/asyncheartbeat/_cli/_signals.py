"""SIGINT and SIGTERM, as ``run`` and ``worker`` hear them."""

from __future__ import annotations

import signal
from collections.abc import Callable

import anyio


async def on_signals(first: Callable[[int], object], second: Callable[[int], object]) -> None:
    """Call ``first`` on the first SIGINT or SIGTERM, ``second`` on each one after."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        handlers = iter((first, second))
        async for signum in signals:
            next(handlers, second)(signum)
