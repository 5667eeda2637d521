"""Client CPU per report through Heartbeat, against a bare report_task_progress loop.

The emulator serves from its own process; this process runs, in alternating rounds, C
callers that report back to back with a bare loop, the same loop sleeping until the next
slot of a fixed-rate grid (the wait any heartbeat has), and C Heartbeats whose interval is
so short that they too report as fast as answers come. The ratio of CPU per report is the
library's own cost on top of aiobotocore's. Rounds alternate so that the machine's drift
hits both sides alike; the medians are compared.

    .venv/bin/python bench/heartbeat_overhead.py [--rounds 7] [--seconds 3] [--callers 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import anyio
from _client import FIELDS, bare, bench_client

from asyncheartbeat import Heartbeat
from asyncheartbeat.testing import EmulatorProcess

# Far below a call's duration: the next report leaves as soon as one is answered.
INTERVAL = 0.0001


async def bare_on_a_grid(client: Any, task_ids: list[str], seconds: float) -> int:
    return await bare(client, task_ids, seconds, sleep_to_grid=True)


async def heartbeats(client: Any, task_ids: list[str], seconds: float) -> int:
    count = 0

    async def guarded(task_id: str) -> None:
        nonlocal count
        async with Heartbeat(
            client, task_id, interval=INTERVAL, lease_timeout=60, call_timeout=10, fields=FIELDS
        ) as hb:
            await anyio.sleep(seconds)
        count += hb.beats

    async with anyio.create_task_group() as tg:
        for task_id in task_ids:
            tg.start_soon(guarded, task_id)
    return count


async def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    runs = {
        "bare loop": bare,
        "bare loop, sleeping to a grid": bare_on_a_grid,
        "Heartbeat": heartbeats,
    }
    results: dict[str, list[float]] = {label: [] for label in runs}
    async with EmulatorProcess(record_calls=False) as dp:
        task_ids = [await dp.add_task() for _ in range(args.callers)]
        async with bench_client(dp.url, args.callers) as client:
            await bare(client, task_ids, 1.0)  # warm up connections and caches
            for _ in range(args.rounds):
                for label, run in runs.items():
                    cpu_before = time.process_time()
                    reports = await run(client, task_ids, args.seconds)
                    results[label].append((time.process_time() - cpu_before) / reports * 1e6)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--callers", type=int, default=50)
    args = parser.parse_args()
    results = asyncio.run(measure(args))
    bare_us = statistics.median(results["bare loop"])
    print(
        f"{args.callers} concurrent callers, {args.rounds} alternating rounds of {args.seconds:g} s"
        "\n"
    )
    print("| client CPU per report | median | rounds |")
    print("| --- | --- | --- |")
    for label, values in results.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {label} | {statistics.median(values):.0f} µs | {rounds} |")
    heartbeat_us = statistics.median(results["Heartbeat"])
    grid_us = statistics.median(results["bare loop, sleeping to a grid"])
    print(f"\nHeartbeat / bare loop: {heartbeat_us / bare_us:.3f}")
    print(f"Heartbeat / bare loop sleeping to a grid: {heartbeat_us / grid_us:.3f}")


if __name__ == "__main__":
    main()
