"""Soak: hundreds of tasks for minutes, with random faults, cancels, reassignments and
pipeline deletions; every task must end exactly as its history dictates, memory flat.

The emulator serves from its own process, meeting ReportTaskProgress calls with transient
faults drawn by a seeded probability (about one call in five: 5xx, throttling, dropped
connections, late answers, malformed bodies, hangs). ``--tasks`` jobs run at once; as one
ends another starts. Each job's fate is drawn when it starts:

| fate | what happens | the outcome it must have |
| --- | --- | --- |
| finish | the job runs 1-12 s, setting a field now and then | the block ends normally; FINISHED |
| cancel | SetStatus CANCEL on its attempt at a random moment | TaskStopped(REQUESTED) |
| delete | its pipeline is deleted at a random moment | TaskStopped(PIPELINE_DELETED) |
| reassign | the service takes the task back at a random moment | TaskStopped(TASK_NOT_FOUND) |

Jobs whose fate is not "finish" run until stopped, which must happen within the lease.
No lease may be lost: the faults leave a success within every lease possible. The exit
status is 1 if any task ended otherwise, or if a task is left running.

    bash scripts/soak.sh [--minutes 3] [--tasks 300] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from typing import Any

import anyio
from _client import bench_client, percentile, rss_bytes

from asyncheartbeat import CancelReason, Heartbeat, TaskStopped
from asyncheartbeat.testing import EmulatorProcess, Fault

INTERVAL, LEASE, CALL_TIMEOUT = 1.0, 10.0, 1.0
FATES = {"finish": 0.7, "cancel": 0.12, "delete": 0.08, "reassign": 0.1}
EXPECTED = {
    "finish": "finished",
    "cancel": CancelReason.REQUESTED.value,
    "delete": CancelReason.PIPELINE_DELETED.value,
    "reassign": CancelReason.TASK_NOT_FOUND.value,
}
FAULTS = [
    (Fault.error("InternalServiceError"), 0.05),
    (Fault.error("ThrottlingException"), 0.04),
    (Fault.drop(), 0.03),
    (Fault.delay(2 * CALL_TIMEOUT), 0.03),
    (Fault.malformed(), 0.02),
    (Fault.hang(), 0.01),
]


class Soak:
    def __init__(self, dp: EmulatorProcess, client: Any, rng: random.Random) -> None:
        self.dp = dp
        self.client = client
        self.rng = rng
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.stop_delays: list[float] = []
        self.beats = 0

    async def job(self) -> None:
        fate = self.rng.choices(list(FATES), weights=list(FATES.values()))[0]
        task_id = await self.dp.add_task()
        acted_at: list[float] = []

        async def act() -> None:
            await anyio.sleep(self.rng.uniform(0.2, 8.0))
            acted_at.append(anyio.current_time())
            if fate == "cancel":
                await self.dp.cancel_task(task_id)
            elif fate == "delete":
                await self.dp.delete_pipeline((await self.dp.attempt(task_id))["pipelineId"])
            else:
                await self.dp.forget_task(task_id)

        outcome = "finished"
        hb = Heartbeat(
            self.client, task_id, interval=INTERVAL, lease_timeout=LEASE, call_timeout=CALL_TIMEOUT
        )
        try:
            async with hb:
                if fate == "finish":
                    for step in range(self.rng.randint(2, 24)):
                        hb.set_field("step", str(step))
                        await anyio.sleep(0.5)
                else:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(act)
                        await anyio.sleep(LEASE + 10)  # stopped long before, or a failure
        except TaskStopped as stopped:
            outcome = stopped.reason.value
            if acted_at:
                self.stop_delays.append(anyio.current_time() - acted_at[0])
        self.beats += hb.beats
        if outcome == "finished":
            await self.client.set_task_status(taskId=task_id, taskStatus="FINISHED")
        self.outcomes[fate, outcome] += 1

    async def population(self, size: int, until: float) -> None:
        async def keep_one_running() -> None:
            await anyio.sleep(self.rng.uniform(0, 2 * INTERVAL))  # a runner's tasks start apart
            while time.monotonic() < until:
                await self.job()

        async with anyio.create_task_group() as tg:
            for _ in range(size):
                tg.start_soon(keep_one_running)


async def soak(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    async with (
        EmulatorProcess(record_calls=False, report_timeout=LEASE, seed=args.seed) as dp,
        bench_client(dp.url, 20) as client,
    ):
        for fault, probability in FAULTS:
            await dp.inject(fault, task_id=None, times=None, probability=probability)
        soak = Soak(dp, client, rng)
        started = time.monotonic()
        memory: list[tuple[float, int]] = []

        async def sample_memory() -> None:
            while True:
                await anyio.sleep(5)
                memory.append((time.monotonic() - started, rss_bytes()))

        async with anyio.create_task_group() as tg:
            tg.start_soon(sample_memory)
            await soak.population(args.tasks, started + args.minutes * 60)
            tg.cancel_scope.cancel()
        leftovers = len(asyncio.all_tasks()) - 1
    return report(soak, memory, leftovers, time.monotonic() - started)


def report(soak: Soak, memory: list[tuple[float, int]], leftovers: int, seconds: float) -> int:
    total = sum(soak.outcomes.values())
    wrong = {key: n for key, n in soak.outcomes.items() if EXPECTED[key[0]] != key[1]}
    print(f"{total:,} tasks in {seconds / 60:.1f} min, {soak.beats:,} reports answered\n")
    print("| fate | outcome | tasks | as its history dictates |")
    print("| --- | --- | --- | --- |")
    for (fate, outcome), n in sorted(soak.outcomes.items()):
        print(f"| {fate} | {outcome} | {n:,} | {'yes' if EXPECTED[fate] == outcome else 'NO'} |")
    delays = soak.stop_delays
    print(
        f"\nFrom cancel, deletion or reassignment to the work stopped: p50 "
        f"{percentile(delays, 0.5):.2f} s, p99 {percentile(delays, 0.99):.2f} s, max "
        f"{max(delays):.2f} s (interval {INTERVAL:g} s, lease {LEASE:g} s)."
    )
    third = max(1, len(memory) // 3)
    first = sum(rss for _, rss in memory[:third]) / third / 2**20
    last = sum(rss for _, rss in memory[-third:]) / third / 2**20
    print(f"Resident memory: {first:.1f} MiB over the first third, {last:.1f} MiB over the last.")
    print(f"Tasks left running at the end: {leftovers}.")
    return 1 if wrong or leftovers else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sys.exit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
