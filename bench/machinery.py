"""The heartbeat's own machinery per report: Heartbeat against a bare fixed-rate loop, both
calling an in-memory client that answers at once, so that nothing but the machinery is left.

N tasks report every 0.2 s for a few seconds; the sides alternate in rounds and the medians
of client CPU per report are compared.

    .venv/bin/python bench/machinery.py [--rounds 5] [--tasks 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from asyncheartbeat import Heartbeat
from asyncheartbeat.testing import MockClient

INTERVAL, SECONDS = 0.2, 3.0


async def cpu_per_call(
    client: MockClient, job: Callable[[int, anyio.Event], Coroutine[Any, Any, None]], tasks: int
) -> float:
    """Run ``job(n, stop)`` for ``tasks`` jobs; after two intervals of warm-up, the client
    CPU in µs per call to ``client`` over `SECONDS`. Then ``stop`` is set."""
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        for n in range(tasks):
            tg.start_soon(job, n, stop)
        await anyio.sleep(2 * INTERVAL)
        calls, cpu = len(client.calls), time.process_time()
        await anyio.sleep(SECONDS)
        cpu, calls = time.process_time() - cpu, len(client.calls) - calls
        stop.set()
    return cpu / calls * 1e6


async def cpu_per_report(tasks: int, *, heartbeat: bool) -> float:
    client = MockClient()

    async def bare(n: int, stop: anyio.Event) -> None:
        due = anyio.current_time() + INTERVAL
        while not stop.is_set():
            await anyio.sleep_until(due)
            await client.report_task_progress(taskId=f"task-{n}", fields=[])
            due += INTERVAL

    async def guarded(n: int, stop: anyio.Event) -> None:
        async with Heartbeat(client, f"task-{n}", interval=INTERVAL, lease_timeout=5):
            await stop.wait()

    return await cpu_per_call(client, guarded if heartbeat else bare, tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    bare: list[float] = []
    heartbeat: list[float] = []
    for _ in range(args.rounds):
        bare.append(asyncio.run(cpu_per_report(args.tasks, heartbeat=False)))
        heartbeat.append(asyncio.run(cpu_per_report(args.tasks, heartbeat=True)))
    print(f"\n{args.tasks} tasks, a report every {INTERVAL:g} s, {args.rounds} alternating rounds")
    print("to an in-memory client that answers at once\n")
    print("| CPU per report, no network | median | rounds |")
    print("| --- | --- | --- |")
    for label, values in (("bare fixed-rate loop", bare), ("Heartbeat", heartbeat)):
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {label} | {statistics.median(values):.0f} µs | {rounds} |")
    extra = statistics.median(heartbeat) - statistics.median(bare)
    print(f"\nThe machinery of Heartbeat: {extra:.0f} µs per report beyond a bare loop.")


if __name__ == "__main__":
    main()
