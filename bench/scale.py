"""Thousands of Heartbeats on one aiobotocore client: lateness, leases, CPU and memory.

The emulator serves from its own process. First the bare client's rate is measured: 50
callers reporting back to back. Then N jobs share one client, each under a Heartbeat whose
interval is set so that together they ask for ``--load`` times that rate (0.5: half of what
the client can do; 2: twice, to see how it degrades). Each job first waits, parked, so that
the process's memory with N jobs and no heartbeat is the baseline; then every job enters
its Heartbeat, and the run lasts ``--intervals`` intervals after the last acknowledgement.
With ``--bare``, the jobs run the same fixed-rate schedule by hand with bare calls instead.

Lateness is the time from a report's slot on its schedule to its answer. Memory per
Heartbeat is the growth of resident memory over the baseline, divided by N.

    .venv/bin/python bench/scale.py --tasks 1000 [--load 0.5] [--intervals 3] [--bare]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from typing import Any

import anyio
from _client import FIELDS, add_tasks, bare, bench_client, percentile, rss_bytes

from asyncheartbeat import Heartbeat, Reporter, TaskStopped
from asyncheartbeat.instrumentation import Event, EventKind
from asyncheartbeat.testing import EmulatorProcess

CONNECTIONS = 10  # aiobotocore's default pool


class OverloadWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "heartbeats overloaded" in record.getMessage()


class Jobs:
    """N jobs on one client, parked until `go`, then running until `stop`."""

    def __init__(self, client: Any, task_ids: list[str], interval: float) -> None:
        self.client = client
        self.task_ids = task_ids
        self.interval = interval
        self.go = anyio.Event()
        self.stop = anyio.Event()
        self.all_running = anyio.Event()
        self.running = 0
        self.outcomes: dict[str, int] = {}
        self.lateness: list[float] = []
        # Each scheduled report's lateness, answered or given up, from its SCHEDULED event.
        self.reporter = Reporter(client, hooks=[self._note])

    def _note(self, event: Event) -> None:
        if event.kind is EventKind.SCHEDULED and event.delay is not None:
            self.lateness.append(event.delay)

    def _started(self) -> None:
        self.running += 1
        if self.running == len(self.task_ids):
            self.all_running.set()

    def _ended(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    async def heartbeat_job(self, task_id: str) -> None:
        await self.go.wait()
        heartbeat = Heartbeat(
            self.reporter, task_id, interval=self.interval, lease_timeout=5 * self.interval
        )
        try:
            async with heartbeat:
                self._started()
                await self.stop.wait()
        except TaskStopped as stopped:
            self._ended(stopped.reason.value)
        else:
            self._ended("kept")

    async def bare_job(self, task_id: str) -> None:
        """The same schedule by hand: a fixed-rate loop of bare calls, nothing else."""
        await self.go.wait()
        await self.client.report_task_progress(taskId=task_id, fields=FIELDS)
        due = anyio.current_time() + self.interval
        self._started()
        while not self.stop.is_set():
            await anyio.sleep_until(due)
            await self.client.report_task_progress(taskId=task_id, fields=FIELDS)
            self.lateness.append(anyio.current_time() - due)
            due += self.interval
        self._ended("kept")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    overloads = OverloadWarnings()
    logging.getLogger("asyncheartbeat").addHandler(overloads)
    logging.getLogger("asyncheartbeat").propagate = False
    async with EmulatorProcess(record_calls=False, report_timeout=3600) as dp:
        task_ids = await add_tasks(dp, args.tasks)
        async with bench_client(dp.url, CONNECTIONS) as client:
            await bare(client, task_ids[:50], 1.0)  # warm up
            started = time.monotonic()
            bare_rate = await bare(client, task_ids[:50], 3.0) / (time.monotonic() - started)
            jobs = Jobs(client, task_ids, args.tasks / (bare_rate * args.load))
            # Load the service model (checking a task id does) before the baseline: a
            # one-off cost of the first Heartbeat, not a cost of each.
            Heartbeat(client, task_ids[0])
            async with anyio.create_task_group() as tg:
                for task_id in task_ids:
                    tg.start_soon(jobs.bare_job if args.bare else jobs.heartbeat_job, task_id)
                await anyio.sleep(0.5)
                baseline = rss_bytes()
                jobs.go.set()
                await jobs.all_running.wait()
                jobs.lateness.clear()
                overloads.count = 0
                cpu_before, wall_before = time.process_time(), time.monotonic()
                rss = []
                for _ in range(args.intervals * 4):
                    await anyio.sleep(jobs.interval / 4)
                    rss.append(rss_bytes())
                cpu = time.process_time() - cpu_before
                wall = time.monotonic() - wall_before
                reports = len(jobs.lateness)
                jobs.stop.set()
    third = len(rss) // 3
    return {
        "what": "bare loops" if args.bare else "Heartbeats",
        "tasks": args.tasks,
        "asked": f"{args.load:g} x {bare_rate:,.0f}/s",
        "interval": jobs.interval,
        "answered_rate": reports / wall,
        "lateness_ms": [percentile(jobs.lateness, share) * 1000 for share in (0.5, 0.99, 1)],
        "lease_losses": sum(n for outcome, n in jobs.outcomes.items() if outcome != "kept"),
        "cpu_per_report_us": cpu / reports * 1e6,
        "cpu_share": cpu / wall,
        "kib_each": (max(rss) - baseline) / args.tasks / 1024,
        "growth_mib": (max(rss[-third:]) - max(rss[:third])) / 2**20,
        "overload_warnings": overloads.count,
    }


HEADER = (
    "| tasks | asked: load x bare client rate | interval | answered / s "
    "| lateness p50 / p99 / max | lease losses | client CPU per report | client CPU use "
    "| memory per task | memory growth, last third | overload WARNINGs |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def row(r: dict[str, Any]) -> str:
    p50, p99, worst = r["lateness_ms"]
    return (
        f"| {r['tasks']:,} {r['what']} | {r['asked']} | {r['interval']:.2f} s "
        f"| {r['answered_rate']:,.0f} | {p50:,.0f} / {p99:,.0f} / {worst:,.0f} ms "
        f"| {r['lease_losses']} | {r['cpu_per_report_us']:,.0f} µs | {r['cpu_share']:.0%} "
        f"| {r['kib_each']:.1f} KiB | {r['growth_mib']:+.1f} MiB | {r['overload_warnings']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--load", type=float, default=0.5)
    parser.add_argument("--intervals", type=int, default=3)
    parser.add_argument("--bare", action="store_true", help="bare fixed-rate loops instead")
    parser.add_argument("--header", action="store_true", help="print the table's header first")
    args = parser.parse_args()
    result = asyncio.run(measure(args))
    if args.header:
        print(HEADER)
    print(row(result))


if __name__ == "__main__":
    main()
