"""What a `ReportingThread` costs beside the reporter on the job's loop, side by side in one
run: client CPU per report, memory per heartbeat, and how much a pure-Python CPU-bound
body slows down beside the thread.

The emulator serves from its own process. Each round measures both ways, one after the
other, and the ratios are the medians over the rounds.

    .venv/bin/python bench/reporting_thread.py --rounds 3 --tasks 200 --seconds 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
from _client import FIELDS, add_tasks, bench_client

from asyncheartbeat import Heartbeat, ReportingThread
from asyncheartbeat.testing import EmulatorProcess

INTERVAL, LEASE = 0.5, 5.0
CONNECTIONS = 20


@contextlib.asynccontextmanager
async def keeper(mode: str, url: str) -> AsyncIterator[Any]:
    """What the heartbeats are given: a client (the reporter on this loop), or a thread."""
    if mode == "loop":
        async with bench_client(url, CONNECTIONS) as client:
            await client.list_pipelines()  # build its session outside the measurement
            yield client
    else:
        async with ReportingThread(lambda: bench_client(url, CONNECTIONS)) as reporting:
            yield reporting


async def cpu_per_report(mode: str, dp: EmulatorProcess, tasks: int, seconds: float) -> float:
    task_ids = await add_tasks(dp, tasks)
    beats: list[Heartbeat] = []
    all_in = anyio.Event()
    async with keeper(mode, dp.url) as reporting:

        async def hold(task_id: str) -> None:
            async with Heartbeat(
                reporting, task_id, interval=INTERVAL, lease_timeout=LEASE, fields=FIELDS
            ) as hb:
                beats.append(hb)
                if len(beats) == tasks:
                    all_in.set()
                await anyio.sleep(seconds)

        async with anyio.create_task_group() as group:
            for task_id in task_ids:
                group.start_soon(hold, task_id)
            await all_in.wait()  # the acknowledgements are not the steady state
            before = (time.process_time(), sum(hb.beats for hb in beats))
        after = (time.process_time(), sum(hb.beats for hb in beats))
    return (after[0] - before[0]) / (after[1] - before[1])


async def memory_per_heartbeat(mode: str, dp: EmulatorProcess, tasks: int) -> float:
    task_ids = await add_tasks(dp, tasks)
    async with keeper(mode, dp.url) as reporting:
        held, all_in = anyio.Event(), anyio.Event()
        entered = 0
        tracemalloc.start()
        start = tracemalloc.take_snapshot()

        async def hold(task_id: str) -> None:
            nonlocal entered
            async with Heartbeat(reporting, task_id, interval=60, lease_timeout=300):
                entered += 1
                if entered == tasks:
                    all_in.set()
                await held.wait()

        async with anyio.create_task_group() as group:
            for task_id in task_ids:
                group.start_soon(hold, task_id)
            await all_in.wait()
            now = tracemalloc.take_snapshot()
            grown = sum(stat.size_diff for stat in now.compare_to(start, "filename"))
            tracemalloc.stop()
            held.set()
    return grown / tasks


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


async def body_seconds(setup: Callable[[], Any], dp: EmulatorProcess, n: int) -> float:
    task_ids = await add_tasks(dp, 100)
    async with setup() as reporting:
        if reporting is None:
            started = time.perf_counter()
            spin(n)
            return time.perf_counter() - started
        async with contextlib.AsyncExitStack() as stack:
            for task_id in task_ids:  # 100 heartbeats reporting beside the body
                await stack.enter_async_context(
                    Heartbeat(reporting, task_id, interval=INTERVAL, lease_timeout=LEASE)
                )
            started = time.perf_counter()
            spin(n)  # blocks the job's loop: only the thread reports meanwhile
            elapsed = time.perf_counter() - started
            await anyio.lowlevel.checkpoint()
        return elapsed


async def measure(rounds: int, tasks: int, seconds: float) -> None:
    cpu: dict[str, list[float]] = {"loop": [], "thread": []}
    memory: dict[str, list[float]] = {"loop": [], "thread": []}
    slowdown: list[float] = []
    n = 3_000_000
    async with EmulatorProcess(record_calls=False, report_timeout=LEASE) as dp:

        @contextlib.asynccontextmanager
        async def bare() -> AsyncIterator[None]:
            yield None

        for _ in range(rounds):
            for mode in ("loop", "thread"):
                cpu[mode].append(await cpu_per_report(mode, dp, tasks, seconds))
                memory[mode].append(await memory_per_heartbeat(mode, dp, tasks))
            alone = await body_seconds(bare, dp, n)
            beside = await body_seconds(lambda: keeper("thread", dp.url), dp, n)
            slowdown.append(beside / alone)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    print(
        f"{tasks} heartbeats, interval {INTERVAL:g} s, {seconds:g} s per measurement, "
        f"{rounds} rounds (medians); the emulator in its own process\n"
    )
    print("| measure | reporter on the loop | on a ReportingThread | thread ÷ loop |")
    print("| --- | --- | --- | --- |")
    loop_cpu, thread_cpu = med(cpu["loop"]) * 1e6, med(cpu["thread"]) * 1e6
    print(
        f"| client CPU per report | {loop_cpu:.0f} µs | {thread_cpu:.0f} µs | "
        f"{med([t / lo for t, lo in zip(cpu['thread'], cpu['loop'], strict=True)]):.2f} |"
    )
    loop_mem, thread_mem = med(memory["loop"]) / 1024, med(memory["thread"]) / 1024
    print(
        f"| memory per heartbeat (sleeping, tracemalloc) | {loop_mem:.1f} KiB | "
        f"{thread_mem:.1f} KiB | {thread_mem / loop_mem:.2f} |"
    )
    print(
        f"| a pure-Python CPU-bound body ({n:,} turns) beside the thread, 100 heartbeats "
        f"reporting | - | {med(slowdown):.2f} x its time alone | - |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    asyncio.run(measure(args.rounds, args.tasks, args.seconds))


if __name__ == "__main__":
    main()
