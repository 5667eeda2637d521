"""Prometheus metrics (``pip install 'asyncheartbeat[prometheus]'``): `PrometheusMetrics`,
and `serve`, a ``/metrics`` endpoint on the running event loop."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

try:
    import prometheus_client
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.registry import REGISTRY, CollectorRegistry
except ImportError as missing:  # pragma: no cover - proved by a test that hides the package
    raise ImportError(
        "asyncheartbeat.metrics.prometheus needs prometheus-client: "
        "pip install 'asyncheartbeat[prometheus]'",
        name=missing.name,
    ) from missing

import anyio

from asyncheartbeat._errors import CancelReason

from ._counting import (
    LEASE_LEFT_BUCKETS,
    REPORT_BUCKETS,
    REPORT_OUTCOMES,
    SPECS,
    TASK_BUCKETS,
    TASK_OUTCOMES,
    Counting,
)

__all__ = ["PrometheusMetrics", "serve"]


class PrometheusMetrics(Counting):
    """Count reports, lateness, leases held, stops and tasks in a Prometheus registry.

    Install it as a hook (``set_hooks([LoggingHook(), metrics])`` or
    ``Reporter(client, hooks=[metrics])``) and give it to a `TaskRunner` as ``on_event``
    for the tasks. One object per registry: fleets of runners in one process share it.
    Every known label value is exported from the start, as zeros.

    Args:
        registry: Where the metrics are registered: by default prometheus_client's global
            ``REGISTRY``, which its own exporters serve. Pass a ``CollectorRegistry()`` of
            your own to keep two sets apart (tests, two runners counted separately).

    Raises:
        ValueError: ``registry`` already has these metrics (from another
            `PrometheusMetrics`): share that one, or `unregister` it first.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        super().__init__()
        self.registry = registry
        self._collectors: list[Any] = []
        try:
            reports = self._add(prometheus_client.Counter, "reports")
            duration = self._add(prometheus_client.Histogram, "report_duration",
                                 buckets=REPORT_BUCKETS)  # fmt: skip
            lateness = self._add(prometheus_client.Histogram, "report_lateness",
                                 buckets=REPORT_BUCKETS)  # fmt: skip
            lease_left = self._add(prometheus_client.Histogram, "report_lease_left",
                                   buckets=LEASE_LEFT_BUCKETS)  # fmt: skip
            leases = self._add(prometheus_client.Gauge, "leases_held")
            stops = self._add(prometheus_client.Counter, "stops")
            tasks = self._add(prometheus_client.Counter, "tasks")
            task_duration = self._add(prometheus_client.Histogram, "task_duration",
                                      buckets=TASK_BUCKETS)  # fmt: skip
        except ValueError as duplicate:
            self.unregister()
            raise ValueError(
                f"this registry has asyncheartbeat's metrics already ({duplicate}): share the "
                f"PrometheusMetrics that made them, unregister() it first, or pass "
                f"registry=CollectorRegistry()"
            ) from None
        # Children looked up once: a label lookup takes a lock and a dict of tuples.
        self._reports = {outcome: reports.labels(outcome) for outcome in REPORT_OUTCOMES}
        self._duration = duration
        self._lateness = lateness
        self._lease_left = lease_left
        self._leases = leases
        self._stops_family = stops
        self._stops = {reason.value: stops.labels(reason.value) for reason in CancelReason}
        self._tasks = {outcome: tasks.labels(outcome) for outcome in TASK_OUTCOMES}
        self._task_durations = {o: task_duration.labels(o) for o in TASK_OUTCOMES}

    def _add(self, kind: Any, key: str, **options: Any) -> Any:
        spec = SPECS[key]
        labels = [spec.label] if spec.label else []
        collector = kind(
            spec.prometheus, spec.description, labels, registry=self.registry, **options
        )
        self._collectors.append(collector)
        return collector

    def unregister(self) -> None:
        """Take these metrics out of their registry (a new `PrometheusMetrics` may then
        register there)."""
        for collector in self._collectors:
            self.registry.unregister(collector)
        self._collectors.clear()

    def _record_report(self, outcome: str) -> None:
        self._reports[outcome].inc()

    def _record_report_duration(self, seconds: float) -> None:
        self._duration.observe(seconds)

    def _record_lateness(self, seconds: float) -> None:
        self._lateness.observe(seconds)

    def _record_lease_left(self, share: float) -> None:
        self._lease_left.observe(share)

    def _record_leases(self, change: int) -> None:
        self._leases.inc(change)

    def _record_stop(self, reason: CancelReason) -> None:
        child = self._stops.get(reason.value)
        if child is None:  # a reason newer than this object's CancelReason
            child = self._stops[reason.value] = self._stops_family.labels(reason.value)
        child.inc()

    def _record_task(self, outcome: str, seconds: float) -> None:
        self._tasks[outcome].inc()
        self._task_durations[outcome].observe(seconds)


@asynccontextmanager
async def serve(
    registry: CollectorRegistry = REGISTRY,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    sock: socket.socket | None = None,
) -> AsyncIterator[str]:
    """Serve ``registry`` at ``/metrics`` (Prometheus text, or OpenMetrics when asked) from
    the running asyncio event loop, while the ``async with`` block runs.

    No thread and no process: the listening socket is closed when the block ends, however
    it ends, and with the event loop at the latest.

    Args:
        registry: What to serve.
        host: The address to listen on.
        port: The port; 0 picks a free one (the URL says which).
        sock: A socket already bound (and listening or not) to serve on instead of
            ``host`` and ``port``.

    Yields:
        The URL of the endpoint, such as ``http://127.0.0.1:9108/metrics``.
    """
    from aiohttp import web  # noqa: PLC0415 - aiobotocore's; only where metrics are served

    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(registry), headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port)
        await site.start()
        address = runner.addresses[0]
        bound_host = f"[{address[0]}]" if ":" in address[0] else address[0]
        yield f"http://{bound_host}:{address[1]}/metrics"
    finally:
        # Shielded: a cancelled block (a second SIGTERM) still closes the listening socket.
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await runner.cleanup()
