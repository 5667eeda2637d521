"""Memory per heartbeat, beyond a bare sleeping task, and the time to enter and leave many.

N jobs sleep in their bodies, each under a `Heartbeat` on one in-memory client that answers
at once; beside them, in the same process, N bare tasks sleep with nothing around them.
tracemalloc measures what each side holds once all are running; the difference, divided
by N, is what a heartbeat costs. Both sides run the same number of tasks, so the task
itself is not counted. ``--hold`` keeps the heartbeats reporting that long before they
leave (with ``--interval`` between reports).

    .venv/bin/python bench/memory.py [--tasks 2000] [--hold 0] [--interval 60]
        [--stall-timeouts none 3600]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc
from typing import Any

import anyio

from asyncheartbeat import Heartbeat
from asyncheartbeat.testing import MockClient


async def held(tasks: int, *, heartbeat: bool, stall_timeout: float | None,
               interval: float, hold: float) -> dict[str, float]:  # fmt: skip
    client = MockClient()
    client.calls = _NoCalls()  # a recording of every call is the client's memory, not ours
    entered = anyio.Event()
    leave = anyio.Event()
    running = 0

    async def job(n: int) -> None:
        nonlocal running
        if heartbeat:
            async with Heartbeat(
                client, f"task-{n}", interval=interval, lease_timeout=5 * interval,
                stall_timeout=stall_timeout,
            ):  # fmt: skip
                running += 1
                if running == tasks:
                    entered.set()
                await leave.wait()
        else:
            running += 1
            if running == tasks:
                entered.set()
            await leave.wait()

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for n in range(tasks):
            tg.start_soon(job, n)
        await entered.wait()
        entered_in = time.perf_counter() - started
        gc.collect()
        holding = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        await anyio.sleep(hold)
        leaving = time.perf_counter()
        leave.set()
    left_in = time.perf_counter() - leaving
    return {"bytes": holding / tasks, "enter": entered_in, "leave": left_in}


class _NoCalls(list[Any]):
    def append(self, item: Any) -> None:
        pass


async def main(args: argparse.Namespace) -> None:
    # Once first, so that what is allocated once per process (imports, caches) is not
    # counted against the heartbeats.
    await held(min(args.tasks, 100), heartbeat=True, stall_timeout=1.0, interval=1, hold=0)
    bare = await held(args.tasks, heartbeat=False, stall_timeout=None, interval=args.interval,
                      hold=0)  # fmt: skip
    print(
        f"{args.tasks} heartbeats on one in-memory client, bodies sleeping, interval "
        f"{args.interval:g} s, held {args.hold:g} s; tracemalloc, beyond {args.tasks} bare "
        f"sleeping tasks ({bare['bytes'] / 1024:.1f} KiB each)\n"
    )
    print("| | memory per heartbeat | enter all | leave all |")
    print("| --- | --- | --- | --- |")
    for stall_timeout in args.stall_timeouts:
        side = await held(args.tasks, heartbeat=True, stall_timeout=stall_timeout,
                          interval=args.interval, hold=args.hold)  # fmt: skip
        print(
            f"| stall_timeout={stall_timeout and f'{stall_timeout:g}'} "
            f"| {(side['bytes'] - bare['bytes']) / 1024:.1f} KiB "
            f"| {side['enter']:.2f} s | {side['leave']:.2f} s |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--hold", type=float, default=0.0)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument(
        "--stall-timeouts", nargs="+", type=lambda text: None if text == "none" else float(text),
        default=[None, 3600.0], help="one row each; 'none' for no watchdog",
    )  # fmt: skip
    asyncio.run(main(parser.parse_args()))
