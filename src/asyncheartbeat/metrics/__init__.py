"""Metrics for dashboards: Prometheus and OpenTelemetry, fed by the instrumentation hooks.

Each backend is one object that is both an instrumentation `Hook` and a `TaskRunner`
``on_event`` callback, so one object counts reports, leases and stops as well as the
runner's tasks::

    from asyncheartbeat.instrumentation import LoggingHook, set_hooks
    from asyncheartbeat.metrics.prometheus import PrometheusMetrics

    metrics = PrometheusMetrics()
    set_hooks([LoggingHook(), metrics])
    runner = TaskRunner(client, worker_group="wg", handler=handle, on_event=metrics)

The backends need their extras: ``pip install 'asyncheartbeat[prometheus]'`` for
`asyncheartbeat.metrics.prometheus`, ``pip install 'asyncheartbeat[opentelemetry]'`` for
`asyncheartbeat.metrics.opentelemetry`. This package itself imports neither.

`METRICS` lists what is counted, under each ecosystem's name.
"""

from ._counting import METRICS, MetricSpec

__all__ = ["METRICS", "MetricSpec"]
