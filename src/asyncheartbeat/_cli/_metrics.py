"""``worker --metrics-port``: the socket, bound while the options are checked, and the
Prometheus metrics served on it from the worker's event loop."""

from __future__ import annotations

import argparse
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from asyncheartbeat._runner import TaskEvent

from ._logging import status

#: The address ``--metrics-port`` listens on unless ``--metrics-host`` says another.
METRICS_HOST = "127.0.0.1"


def check(args: argparse.Namespace) -> socket.socket | None:
    """The socket ``--metrics-port`` asks for, listening; None without it. Refuse, naming
    the option, what cannot work."""
    if args.metrics_port is None:
        if args.metrics_host is not None:
            raise ValueError("--metrics-host needs --metrics-port")
        return None
    try:
        import asyncheartbeat.metrics.prometheus  # noqa: F401, PLC0415 - an extra's
    except ImportError as missing:
        raise ValueError(f"--metrics-port: {missing}") from None
    # Bound now, before any task is polled: a port in use is refused here, not found out
    # by a worker already running without its metrics.
    host = args.metrics_host or METRICS_HOST
    try:
        return _listen(host, args.metrics_port)
    except OSError as error:
        raise ValueError(
            f"--metrics-port {args.metrics_port}: cannot listen on {host}: "
            f"{error.strerror or error}"
        ) from None


@asynccontextmanager
async def served(sock: socket.socket) -> AsyncIterator[Callable[[TaskEvent], None]]:
    """Serve the metrics on ``sock`` while the block runs; yields the runner's events' hook."""
    from asyncheartbeat.instrumentation import get_hooks, set_hooks  # noqa: PLC0415
    from asyncheartbeat.metrics.prometheus import PrometheusMetrics, serve  # noqa: PLC0415 - an extra's

    metrics = PrometheusMetrics()
    set_hooks([*get_hooks(), metrics])
    # Served from this event loop: the port closes as the worker ends, however it ends,
    # and scrapes still answer while running tasks get their --shutdown-grace.
    async with serve(sock=sock) as url:
        status(f"metrics at {url}")
        yield metrics


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port`` (IPv6 if ``host`` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)
