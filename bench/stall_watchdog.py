"""What the stall watchdog costs: Heartbeats without and with a ``stall_timeout``, side by
side in one run, their bodies calling ``progress()`` alike, against an in-memory client that
answers at once, so that nothing but the machinery is measured; then one ``progress()``
call, and the memory a watchdog adds to a heartbeat.

N tasks report every 0.2 s for a few seconds while their bodies note progress every 0.1 s;
the sides alternate in rounds and the medians of client CPU per report are compared.

    .venv/bin/python bench/stall_watchdog.py [--rounds 5] [--tasks 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import tracemalloc

import anyio
from machinery import INTERVAL, cpu_per_call

from asyncheartbeat import Heartbeat
from asyncheartbeat.testing import MockClient

PROGRESS_EVERY = 0.1
#: Five reports' worth: the watchdog wakes and re-arms about once a second per heartbeat.
STALL_TIMEOUT = 1.0
CALLS = 200_000


async def cpu_per_report(tasks: int, stall_timeout: float | None) -> float:
    client = MockClient()
    stalled = 0

    async def job(n: int, stop: anyio.Event) -> None:
        nonlocal stalled
        async with Heartbeat(
            client, f"task-{n}", interval=INTERVAL, lease_timeout=5,
            stall_timeout=stall_timeout, raise_on_cancel=False,
        ) as hb:  # fmt: skip
            while not stop.is_set():
                hb.progress()
                await anyio.sleep(PROGRESS_EVERY)
        stalled += hb.cancel_reason is not None

    cpu = await cpu_per_call(client, job, tasks)
    if stalled:
        raise SystemExit(f"{stalled} of {tasks} heartbeats stopped: the loop lagged, rerun")
    return cpu


async def nanoseconds_per_progress(stall_timeout: float | None) -> float:
    """The median over 5 runs of CALLS progress() calls, less an empty loop's time."""
    runs = []
    async with Heartbeat(
        MockClient(), "task", interval=60, lease_timeout=300, stall_timeout=stall_timeout
    ) as hb:
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(CALLS):
                pass
            empty = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(CALLS):
                hb.progress()
            runs.append((time.perf_counter() - start - empty) / CALLS * 1e9)
    return statistics.median(runs)


async def bytes_per_heartbeat(tasks: int, stall_timeout: float | None) -> float:
    """Memory traced while ``tasks`` heartbeats run, over what their jobs hold without."""
    client = MockClient()
    entered, stop = anyio.Event(), anyio.Event()
    inside = 0

    async def job(n: int, guarded: bool) -> None:
        nonlocal inside
        if not guarded:
            inside += 1
            if inside == tasks:
                entered.set()
            await stop.wait()
            return
        async with Heartbeat(
            client, f"task-{n}", interval=60, lease_timeout=300, stall_timeout=stall_timeout
        ):
            inside += 1
            if inside == tasks:
                entered.set()
            await stop.wait()

    sizes = []
    for guarded in (False, True):
        inside, entered, stop = 0, anyio.Event(), anyio.Event()
        gc.collect()
        tracemalloc.start()
        async with anyio.create_task_group() as tg:
            for n in range(tasks):
                tg.start_soon(job, n, guarded)
            await entered.wait()
            gc.collect()
            sizes.append(tracemalloc.get_traced_memory()[0])
            stop.set()
        tracemalloc.stop()
    return (sizes[1] - sizes[0]) / tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    sides: dict[str, float | None] = {
        "stall_timeout=None": None,
        f"stall_timeout={STALL_TIMEOUT:g}": STALL_TIMEOUT,
    }
    cpu: dict[str, list[float]] = {label: [] for label in sides}
    for _ in range(args.rounds):
        for label, stall_timeout in sides.items():
            cpu[label].append(asyncio.run(cpu_per_report(args.tasks, stall_timeout)))
    print(
        f"{args.tasks} Heartbeats, a report every {INTERVAL:g} s, progress() every "
        f"{PROGRESS_EVERY:g} s in every body, {args.rounds} alternating rounds,"
        "\nto an in-memory client that answers at once\n"
    )
    print("| CPU per report, no network | median | rounds |")
    print("| --- | --- | --- |")
    for label, values in cpu.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {label} | {statistics.median(values):.0f} µs | {rounds} |")
    off, on = (statistics.median(values) for values in cpu.values())
    print(f"\nwith a stall watchdog / without: {on / off:.3f}\n")

    print("| one progress() call | median of 5 runs |")
    print("| --- | --- |")
    for label, stall_timeout in sides.items():
        ns = asyncio.run(nanoseconds_per_progress(stall_timeout))
        print(f"| {label} | {ns:.0f} ns |")
    memory = {
        label: asyncio.run(bytes_per_heartbeat(args.tasks, stall_timeout))
        for label, stall_timeout in sides.items()
    }
    off_bytes, on_bytes = memory.values()
    print(
        f"\nMemory per heartbeat (tracemalloc, {args.tasks} heartbeats): "
        f"{off_bytes / 1024:.1f} KiB without a watchdog, {on_bytes / 1024:.1f} KiB with one."
    )


if __name__ == "__main__":
    main()
