"""What the metrics hooks cost: per event handed to the hooks, and per report of 1,000
heartbeats on an in-memory client, with the default hooks alone and with a metrics backend
beside them, side by side in alternating rounds of one run.

    .venv/bin/python bench/metrics_overhead.py [--rounds 5] [--events 200000] [--tasks 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from machinery import cpu_per_report
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

from asyncheartbeat import Reporter
from asyncheartbeat.instrumentation import Event, EventKind, Hook, LoggingHook, set_hooks
from asyncheartbeat.metrics.opentelemetry import OpenTelemetryMetrics
from asyncheartbeat.metrics.prometheus import PrometheusMetrics
from asyncheartbeat.testing import MockClient

#: What a heartbeat hands the hooks for each scheduled report: its answer and its lateness.
PER_REPORT = (
    Event(EventKind.ANSWERED, "ReportTaskProgress", "task-1", 1, latency=0.0042),
    Event(EventKind.SCHEDULED, "ReportTaskProgress", "task-1", delay=0.0051),
)


def sides() -> dict[str, Callable[[], list[Hook]]]:
    def prometheus() -> list[Hook]:
        return [LoggingHook(), PrometheusMetrics(CollectorRegistry())]

    def opentelemetry() -> list[Hook]:
        provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        return [LoggingHook(), OpenTelemetryMetrics(provider)]

    return {"LoggingHook (the default)": lambda: [LoggingHook()],
            "LoggingHook + PrometheusMetrics": prometheus,
            "LoggingHook + OpenTelemetryMetrics": opentelemetry}  # fmt: skip


def ns_per_event(hooks: list[Hook], events: int) -> float:
    """Nanoseconds of `Calls.emit` per event, through the global hooks."""
    set_hooks(hooks)
    layer = Reporter(MockClient())
    emit = layer.calls.emit
    batch = PER_REPORT * (events // len(PER_REPORT))
    started = time.perf_counter()
    for event in batch:
        emit(event)
    return (time.perf_counter() - started) / len(batch) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    per_event: dict[str, list[float]] = {name: [] for name in sides()}
    per_report: dict[str, list[float]] = {name: [] for name in sides()}
    for _ in range(args.rounds):
        for name, hooks in sides().items():
            per_event[name].append(ns_per_event(hooks(), args.events))
            set_hooks(hooks())
            per_report[name].append(asyncio.run(cpu_per_report(args.tasks, heartbeat=True)))
    set_hooks([LoggingHook()])

    print(f"\n{args.rounds} alternating rounds; each event an answered report or its lateness")
    print("(the two events of every scheduled report), handed to the global hooks\n")
    header = f"CPU per report, {args.tasks} heartbeats"
    print(f"| hooks | per event | rounds (ns) | {header} | rounds (µs) |")
    print("| --- | --- | --- | --- | --- |")
    for name in sides():
        events, reports = per_event[name], per_report[name]
        print(
            f"| {name} | {statistics.median(events) / 1000:.2f} µs "
            f"| {', '.join(f'{v:.0f}' for v in events)} "
            f"| {statistics.median(reports):.0f} µs | {', '.join(f'{v:.0f}' for v in reports)} |"
        )
    base_event = statistics.median(per_event["LoggingHook (the default)"])
    base_report = statistics.median(per_report["LoggingHook (the default)"])
    for name in list(sides())[1:]:
        event_cost = (statistics.median(per_event[name]) - base_event) / 1000
        report_cost = statistics.median(per_report[name]) - base_report
        print(
            f"\n{name.split(' + ')[1]}: {event_cost:.2f} µs more per event, "
            f"{report_cost:.0f} µs more per report (CPU, medians)."
        )


if __name__ == "__main__":
    main()
