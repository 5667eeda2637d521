"""Heartbeat against what users would write instead: the sync boto3 client called from a
thread per report, and a naive hand-written loop (create_task + sleep + a bare call).

Part one, costs at saturation: N tasks report as fast as answers come, each approach in a
fresh process of its own against the same emulator (its own process too), in alternating
rounds; medians of reports/s, client CPU per report, resident memory and threads.

Part two, the naive loop under faults: a job of 3 s, reports every 0.2 s, the emulator
reassigning a task after 1 s without a report. The naive loop uses the client as
``create_client("datapipeline")`` makes it (botocore's default retries), as users would.

    .venv/bin/python bench/alternatives.py [--tasks 200] [--seconds 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import boto3
from _client import FIELDS, add_tasks, bench_client, rss_bytes
from aiobotocore.session import get_session
from botocore.config import Config

from asyncheartbeat import Heartbeat, TaskStopped
from asyncheartbeat.testing import EmulatorProcess, Fault

APPROACHES = ("Heartbeat", "naive loop", "boto3 + to_thread")
CONNECTIONS = 10


async def saturate(
    approach: str, url: str, task_ids: list[str], seconds: float
) -> dict[str, float]:
    """Run one approach for ``seconds``; its reports/s, CPU per report, memory and threads."""
    count = 0
    threads = threading.active_count()
    stop_at = time.monotonic() + seconds

    async def heartbeat(client: Any, task_id: str) -> None:
        nonlocal count
        async with Heartbeat(
            client, task_id, interval=0.0001, lease_timeout=60, call_timeout=10
        ) as hb:
            await anyio.sleep(stop_at - time.monotonic())
        count += hb.beats

    async def naive(client: Any, task_id: str) -> None:
        nonlocal count
        while time.monotonic() < stop_at:
            await client.report_task_progress(taskId=task_id, fields=FIELDS)
            count += 1
            await asyncio.sleep(0)

    def sync_client() -> Any:
        return boto3.client(
            "datapipeline",
            region_name="us-east-1",
            endpoint_url=url,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=Config(retries={"total_max_attempts": 1}, max_pool_connections=CONNECTIONS),
        )

    async def threaded(client: Any, task_id: str) -> None:
        nonlocal count, threads
        while time.monotonic() < stop_at:
            await asyncio.to_thread(client.report_task_progress, taskId=task_id, fields=FIELDS)
            count += 1
            threads = max(threads, threading.active_count())

    async def run(client: Any, job: Callable[[Any, str], Coroutine[Any, Any, None]]) -> None:
        async with anyio.create_task_group() as tg:
            for task_id in task_ids:
                tg.start_soon(job, client, task_id)

    rss_before = rss_bytes()
    cpu_before, wall_before = time.process_time(), time.monotonic()
    if approach == "boto3 + to_thread":
        await run(sync_client(), threaded)
    else:
        async with bench_client(url, CONNECTIONS) as client:
            await run(client, heartbeat if approach == "Heartbeat" else naive)
    wall = time.monotonic() - wall_before
    return {
        "rate": count / wall,
        "cpu_us": (time.process_time() - cpu_before) / count * 1e6,
        "rss_mib": (rss_bytes() - rss_before) / 2**20,
        "threads": max(threads, threading.active_count()),
    }


def costs(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """Each approach in a process of its own, in alternating rounds."""

    results: dict[str, list[dict[str, float]]] = {approach: [] for approach in APPROACHES}

    async def rounds() -> None:
        async with EmulatorProcess(record_calls=False, report_timeout=3600) as dp:
            task_ids = await add_tasks(dp, args.tasks)
            for _ in range(args.rounds):
                for approach in APPROACHES:
                    command = [sys.executable, __file__, "--one", approach, "--url", dp.url]
                    command += ["--seconds", str(args.seconds), "--task-ids", ",".join(task_ids)]
                    done = await anyio.run_process(command, stderr=subprocess.DEVNULL)
                    results[approach].append(json.loads(done.stdout))

    asyncio.run(rounds())
    return results


# -- part two: the naive loop under faults ---------------------------------------------------

INTERVAL, REASSIGN_AFTER, JOB_SECONDS = 0.2, 1.0, 3.0


async def naive_heartbeat(client: Any, task_id: str) -> None:
    while True:
        await client.report_task_progress(taskId=task_id)
        await asyncio.sleep(INTERVAL)


async def naive_job(client: Any, task_id: str) -> str:
    heartbeat = asyncio.create_task(naive_heartbeat(client, task_id))
    await asyncio.sleep(JOB_SECONDS)  # the job
    if heartbeat.done():
        return f"heartbeat died ({type(heartbeat.exception()).__name__}), unnoticed; job ran on"
    heartbeat.cancel()
    return "job ran to its end"


async def heartbeat_job(client: Any, task_id: str) -> str:
    try:
        async with Heartbeat(client, task_id, interval=INTERVAL, lease_timeout=REASSIGN_AFTER):
            await asyncio.sleep(JOB_SECONDS)
    except TaskStopped as stopped:
        return f"work stopped: {stopped.reason.value}"
    return "job ran to its end"


async def under_faults() -> list[tuple[str, str, str]]:
    async def cancel(dp: EmulatorProcess, task_id: str) -> None:
        await dp.cancel_task(task_id)

    async def delete(dp: EmulatorProcess, task_id: str) -> None:
        await dp.delete_pipeline((await dp.attempt(task_id))["pipelineId"])

    async def errors(dp: EmulatorProcess, task_id: str) -> None:
        await dp.inject(Fault.error("InternalServiceError"), task_id=task_id, times=None)
        await asyncio.sleep(0.6)
        await dp.clear_faults()

    async def hang(dp: EmulatorProcess, task_id: str) -> None:
        await dp.inject(Fault.hang(), task_id=task_id)

    async def drops(dp: EmulatorProcess, task_id: str) -> None:
        await dp.inject(Fault.drop(), task_id=task_id, times=None, probability=0.5)

    faults: dict[str, Callable[[EmulatorProcess, str], Coroutine[Any, Any, None]]] = {
        "the service answers 500 to every report for 0.6 s": errors,
        "one report hangs": hang,
        "half the connections are dropped": drops,
        "the task is cancelled": cancel,
        "the pipeline is deleted": delete,
    }
    rows = []
    async with EmulatorProcess(record_calls=False, report_timeout=REASSIGN_AFTER, seed=7) as dp:
        natural = get_session().create_client(
            "datapipeline", region_name="us-east-1", endpoint_url=dp.url,
            aws_access_key_id="bench", aws_secret_access_key="bench",
        )  # fmt: skip
        async with natural as naive_client, bench_client(dp.url, CONNECTIONS) as client:
            for label, fault in faults.items():
                outcomes = []
                for job, job_client in ((naive_job, naive_client), (heartbeat_job, client)):
                    task_id = await dp.add_task(report_progress_timeout=None)
                    await job_client.report_task_progress(taskId=task_id)  # acknowledged
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(fault, dp, task_id)
                        outcome = await job(job_client, task_id)
                    await dp.clear_faults()
                    status = await attempt_status(dp, task_id)
                    outcomes.append(f"{outcome}; attempt {status}")
                rows.append((label, outcomes[0], outcomes[1]))
    return rows


async def attempt_status(dp: EmulatorProcess, task_id: str) -> str:
    fields = (await dp.attempt(task_id))["fields"]
    status: str = next(f["stringValue"] for f in fields if f["key"] == "@status")
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", choices=APPROACHES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--task-ids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        task_ids = args.task_ids.split(",")
        print(json.dumps(asyncio.run(saturate(args.one, args.url, task_ids, args.seconds))))
        return

    results = costs(args)
    medians = {
        approach: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for approach, runs in results.items()
    }
    base = medians["Heartbeat"]
    print(f"{args.tasks} tasks reporting back to back, {args.rounds} alternating rounds", end="")
    print(f" of {args.seconds:g} s; ratios against Heartbeat\n")
    print("| approach | reports / s | client CPU per report | memory growth | threads |")
    print("| --- | --- | --- | --- | --- |")
    for approach, m in medians.items():
        print(
            f"| {approach} | {m['rate']:,.0f} ({m['rate'] / base['rate']:.2f} x) "
            f"| {m['cpu_us']:,.0f} µs ({m['cpu_us'] / base['cpu_us']:.2f} x) "
            f"| {m['rss_mib']:.1f} MiB | {m['threads']:.0f} |"
        )
    print(f"\nUnder faults: a {JOB_SECONDS:g} s job, reports every {INTERVAL:g} s,", end="")
    print(f" reassigned after {REASSIGN_AFTER:g} s without one\n")
    print("| fault | naive loop | Heartbeat |")
    print("| --- | --- | --- |")
    for label, naive, ours in asyncio.run(under_faults()):
        print(f"| {label} | {naive} | {ours} |")


if __name__ == "__main__":
    main()
