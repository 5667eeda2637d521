"""OpenTelemetry metrics (``pip install 'asyncheartbeat[opentelemetry]'``):
`OpenTelemetryMetrics`, recorded through the OpenTelemetry API to whatever meter provider
the application configured."""

from __future__ import annotations

import importlib.metadata
from typing import Any

try:
    from opentelemetry import metrics as otel_metrics
except ImportError as missing:  # pragma: no cover - proved by a test that hides the package
    raise ImportError(
        "asyncheartbeat.metrics.opentelemetry needs opentelemetry-api: "
        "pip install 'asyncheartbeat[opentelemetry]'",
        name=missing.name,
    ) from missing

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

__all__ = ["OpenTelemetryMetrics"]


class OpenTelemetryMetrics(Counting):
    """Count reports, lateness, leases held, stops and tasks as OpenTelemetry instruments
    of the meter ``asyncheartbeat``.

    Install it as a hook (``set_hooks([LoggingHook(), metrics])`` or
    ``Reporter(client, hooks=[metrics])``) and give it to a `TaskRunner` as ``on_event``
    for the tasks. Instruments of the same name from two objects are one instrument to
    the SDK, so two of them on one provider add up.

    Args:
        meter_provider: Where the instruments come from: by default the global provider
            (`opentelemetry.metrics.set_meter_provider`; without one, a no-op provider
            until it is set).
    """

    def __init__(self, meter_provider: otel_metrics.MeterProvider | None = None) -> None:
        super().__init__()
        try:
            version = importlib.metadata.version("asyncheartbeat")
        except importlib.metadata.PackageNotFoundError:  # run from a source tree
            version = ""
        meter = otel_metrics.get_meter("asyncheartbeat", version, meter_provider=meter_provider)

        def spec(key: str) -> dict[str, Any]:
            metric = SPECS[key]
            return {"name": metric.opentelemetry, "unit": metric.unit,
                    "description": metric.description}  # fmt: skip

        self._reports = meter.create_counter(**spec("reports"))
        self._duration = meter.create_histogram(
            **spec("report_duration"), explicit_bucket_boundaries_advisory=REPORT_BUCKETS
        )
        self._lateness = meter.create_histogram(
            **spec("report_lateness"), explicit_bucket_boundaries_advisory=REPORT_BUCKETS
        )
        self._lease_left = meter.create_histogram(
            **spec("report_lease_left"), explicit_bucket_boundaries_advisory=LEASE_LEFT_BUCKETS
        )
        self._leases = meter.create_up_down_counter(**spec("leases_held"))
        self._stops = meter.create_counter(**spec("stops"))
        self._tasks = meter.create_counter(**spec("tasks"))
        self._task_duration = meter.create_histogram(
            **spec("task_duration"), explicit_bucket_boundaries_advisory=TASK_BUCKETS
        )
        # Attribute sets made once: one dict per event would be most of its cost.
        report, stop, task = (_attribute(key) for key in ("reports", "stops", "tasks"))
        self._report_attributes = {o: {report: o} for o in REPORT_OUTCOMES}
        self._stop_attributes = {r.value: {stop: r.value} for r in CancelReason}
        self._task_attributes = {o: {task: o} for o in TASK_OUTCOMES}

    def _record_report(self, outcome: str) -> None:
        self._reports.add(1, self._report_attributes[outcome])

    def _record_report_duration(self, seconds: float) -> None:
        self._duration.record(seconds)

    def _record_lateness(self, seconds: float) -> None:
        self._lateness.record(seconds)

    def _record_lease_left(self, share: float) -> None:
        self._lease_left.record(share)

    def _record_leases(self, change: int) -> None:
        self._leases.add(change)

    def _record_stop(self, reason: CancelReason) -> None:
        attributes = self._stop_attributes.get(reason.value)
        if attributes is None:
            attributes = {_attribute("stops"): reason.value}
            self._stop_attributes[reason.value] = attributes
        self._stops.add(1, attributes)

    def _record_task(self, outcome: str, seconds: float) -> None:
        attributes = self._task_attributes[outcome]
        self._tasks.add(1, attributes)
        self._task_duration.record(seconds, attributes)


def _attribute(key: str) -> str:
    attribute = SPECS[key].attribute
    assert attribute is not None, key
    return attribute
