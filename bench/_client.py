"""What every benchmark shares: the client, tasks in bulk, and readings of this process."""

from __future__ import annotations

import os
import resource
from typing import Any

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from asyncheartbeat.testing import EmulatorProcess

FIELDS = [{"key": "rowsCopied", "stringValue": "12345"}]


def bench_client(url: str, connections: int) -> Any:
    """An aiobotocore DataPipeline client for ``url`` (an async context manager)."""
    return get_session().create_client(
        "datapipeline",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=AioConfig(retries={"total_max_attempts": 1}, max_pool_connections=connections),
    )


async def add_tasks(dp: EmulatorProcess, count: int, **options: Any) -> list[str]:
    """``count`` tasks handed out by the emulator, made 50 at a time."""
    task_ids: list[str] = []
    limit = anyio.Semaphore(50)

    async def add() -> None:
        async with limit:
            task_ids.append(await dp.add_task(**options))

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(add)
    return task_ids


async def bare(
    client: Any, task_ids: list[str], seconds: float, *, sleep_to_grid: bool = False
) -> int:
    """Report back to back for each task (or sleeping until the next slot of a fine grid in
    between, the wait any heartbeat has) for ``seconds``; return the answers."""
    count = 0
    stop_at = anyio.current_time() + seconds

    async def caller(task_id: str) -> None:
        nonlocal count
        due = anyio.current_time()
        while anyio.current_time() < stop_at:
            await client.report_task_progress(taskId=task_id, fields=FIELDS)
            count += 1
            if sleep_to_grid:
                due = max(due + 0.0001, anyio.current_time())
                await anyio.sleep_until(due)

    async with anyio.create_task_group() as tg:
        for task_id in task_ids:
            tg.start_soon(caller, task_id)
    return count


def rss_bytes() -> int:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    """The value below which ``share`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def attempt_statuses(dp: EmulatorProcess, task_ids: list[str]) -> dict[str, str]:
    """Each task's attempt status, as the emulator has it now."""
    statuses: dict[str, str] = {}
    limit = anyio.Semaphore(20)

    async def read(task_id: str) -> None:
        async with limit:
            fields = (await dp.attempt(task_id))["fields"]
        statuses[task_id] = next(f["stringValue"] for f in fields if f["key"] == "@status")

    async with anyio.create_task_group() as tg:
        for task_id in task_ids:
            tg.start_soon(read, task_id)
    return statuses
