"""What blocking the event loop does to a heartbeat, measured, and the fix.

The emulator serves from its own process and reassigns a task after 5 s without a report;
the heartbeat reports every second with a 5 s lease. The job blocks the event loop with
``time.sleep`` (standing in for any synchronous call or long computation) for 2.5 s, then
for 6 s, then runs the same 6 s in a worker thread, and finally blocks for 6 s with the
reports on a `ReportingThread`.

    .venv/bin/python bench/blocked_loop.py
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import anyio
from _client import bench_client

from asyncheartbeat import Heartbeat, ReportingThread, TaskStopped
from asyncheartbeat.testing import EmulatorProcess

INTERVAL, LEASE = 1.0, 5.0


class SendTimes:
    """The client, noting when each report was sent."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.meta = client.meta
        self.sent: list[float] = []

    async def report_task_progress(self, **params: Any) -> Mapping[str, Any]:
        self.sent.append(anyio.current_time())
        answer: Mapping[str, Any] = await self._client.report_task_progress(**params)
        return answer


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.asynccontextmanager
async def recording(url: str, made: list[SendTimes]) -> AsyncIterator[SendTimes]:
    """A client that notes its send times, made in the reporting thread."""
    async with bench_client(url, 10) as client:
        made.append(SendTimes(client))
        yield made[-1]


async def job(client: Any, task_id: str, work: Callable[[], Any]) -> str:
    try:
        async with Heartbeat(client, task_id, interval=INTERVAL, lease_timeout=LEASE):
            await anyio.sleep(0.2)
            await work()
            await anyio.sleep(1.5)
    except TaskStopped as stopped:
        return f"stopped the work: {stopped.reason.value}"
    return "kept the task"


async def measure() -> list[tuple[str, str, float, str]]:
    warnings = Warnings()
    logging.getLogger("asyncheartbeat").addHandler(warnings)
    logging.getLogger("asyncheartbeat").propagate = False

    async def block(seconds: float) -> None:
        time.sleep(seconds)  # noqa: ASYNC251 - the blocking job code this measures

    scenarios: list[tuple[str, Callable[[], Any], bool]] = [
        ("`time.sleep(2.5)` in the job", lambda: block(2.5), False),
        ("`time.sleep(6)` in the job", lambda: block(6), False),
        (
            "`await anyio.to_thread.run_sync(time.sleep, 6)`",
            lambda: anyio.to_thread.run_sync(time.sleep, 6),
            False,
        ),
        ("`time.sleep(6)` in the job, beside a `ReportingThread`", lambda: block(6), True),
    ]
    rows = []
    async with (
        EmulatorProcess(record_calls=False, report_timeout=LEASE) as dp,
        bench_client(dp.url, 10) as raw,
    ):
        for label, work, threaded in scenarios:
            warnings.messages.clear()
            task_id = await dp.add_task()
            if threaded:
                made: list[SendTimes] = []
                make = functools.partial(recording, dp.url, made)
                async with ReportingThread(make) as reporting:
                    outcome = await job(reporting, task_id, work)
                client = made[0]
            else:
                client = SendTimes(raw)
                outcome = await job(client, task_id, work)
            sent = [*client.sent, anyio.current_time()]
            silence = max(b - a for a, b in itertools.pairwise(sent))
            said = "; ".join(warnings.messages).replace(task_id, "…") or "nothing"
            rows.append((label, outcome, silence, said))
    return rows


def main() -> None:
    rows = asyncio.run(measure())
    print(f"interval {INTERVAL:g} s, lease {LEASE:g} s, the emulator reassigns after {LEASE:g} s\n")
    print("| the job | the heartbeat | longest time without a report | logged |")
    print("| --- | --- | --- | --- |")
    for label, outcome, late, said in rows:
        print(f"| {label} | {outcome} | {late:.2f} s | {said} |")


if __name__ == "__main__":
    main()
