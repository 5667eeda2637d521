"""How many ReportTaskProgress calls per second the local Data Pipeline answers.

The emulator runs in its own process (one core); this process (the other core) sends
reports for many tasks at once and counts answers. Two clients are measured side by side:
raw aiohttp POSTs, cheap enough that the server is the bottleneck, and aiobotocore, whose
own per-call cost is usually the limit. Server CPU per report is read from /proc.

    .venv/bin/python bench/emulator_throughput.py [--seconds 5] [--concurrency 200] [--tasks 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from _client import bench_client, cpu_seconds

from asyncheartbeat.testing import EmulatorProcess

HEADERS = {
    "X-Amz-Target": "DataPipeline.ReportTaskProgress",
    "Content-Type": "application/x-amz-json-1.1",
    # The emulator asks for a SigV4 header but does not check the signature.
    "Authorization": "AWS4-HMAC-SHA256 Credential=bench/20261122/us-east-1/datapipeline/req",
}


async def hammer(
    seconds: float, concurrency: int, task_ids: list[str], report: Callable[[str], Awaitable[Any]]
) -> int:
    answered = 0
    stop_at = time.monotonic() + seconds

    async def worker(n: int) -> None:
        nonlocal answered
        i = n
        while time.monotonic() < stop_at:
            await report(task_ids[i % len(task_ids)])
            answered += 1
            i += concurrency

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return answered


async def measure(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    rows = []
    async with EmulatorProcess(record_calls=False) as dp:
        task_ids = [await dp.add_task() for _ in range(args.tasks)]
        fields = [{"key": "rowsCopied", "stringValue": "12345"}]

        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def raw(task_id: str) -> None:
                body = json.dumps({"taskId": task_id, "fields": fields})
                async with session.post(dp.url, data=body, headers=HEADERS) as answer:
                    assert answer.status == 200, await answer.text()
                    await answer.read()

            rows.append(await run("raw aiohttp POST", raw, dp.pid, args, task_ids))

        async with bench_client(dp.url, args.concurrency) as client:

            async def botocore(task_id: str) -> None:
                await client.report_task_progress(taskId=task_id, fields=fields)

            rows.append(await run("aiobotocore client", botocore, dp.pid, args, task_ids))
    return rows


async def run(
    label: str,
    report: Callable[[str], Awaitable[Any]],
    server_pid: int,
    args: argparse.Namespace,
    task_ids: list[str],
) -> tuple[str, float, float]:
    await hammer(0.5, args.concurrency, task_ids, report)  # warm up connections
    server_before, wall_before = cpu_seconds(server_pid), time.monotonic()
    answered = await hammer(args.seconds, args.concurrency, task_ids, report)
    elapsed = time.monotonic() - wall_before
    server_cpu = cpu_seconds(server_pid) - server_before
    return label, answered / elapsed, server_cpu / answered * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()
    rows = asyncio.run(measure(args))
    print(
        f"{args.tasks} tasks, {args.concurrency} concurrent callers, {args.seconds:g} s each, "
        f"{os.cpu_count()} cores\n"
    )
    print("| client | reports answered / s | server CPU per report |")
    print("| --- | --- | --- |")
    for label, rate, cpu_us in rows:
        print(f"| {label} | {rate:,.0f} | {cpu_us:,.0f} µs |")


if __name__ == "__main__":
    main()
