"""How fast the heartbeat keeps its promises: cancellation reaches the body, and leaving
the block returns, measured beyond the HTTP round trip itself.

The emulator serves from its own process. Each run takes a fresh task. For cancellation,
the body asks the emulator to cancel the task and waits; the next report is answered
``canceled: true``. Measured: from the moment aiobotocore hands that answer back to the
moment the body sees its cancellation. For leaving, the body ends at a random point of the
interval, with no field changed (so no final report is owed), either while the heartbeat
sleeps or while a report is in flight (the emulator holds every answer 20 ms); measured:
from the body's last line to the line after ``async with``.

    .venv/bin/python bench/promises.py [--runs 300]
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Mapping
from typing import Any

import anyio
from _client import add_tasks, bench_client, percentile

from asyncheartbeat import Heartbeat, TaskStopped
from asyncheartbeat.testing import EmulatorProcess, Fault

INTERVAL = 0.05


class AnswerClock:
    """The client, noting when each answer came back and how long its round trip took."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.meta = client.meta
        self.answered_at = 0.0
        self.round_trip = 0.0
        self.in_flight = 0
        self.call_started: anyio.Event | None = None

    async def report_task_progress(self, **params: Any) -> Mapping[str, Any]:
        sent_at = anyio.current_time()
        self.in_flight += 1
        if self.call_started is not None:
            self.call_started.set()
        try:
            answer: Mapping[str, Any] = await self._client.report_task_progress(**params)
        finally:
            self.in_flight -= 1
        self.answered_at = anyio.current_time()
        self.round_trip = self.answered_at - sent_at
        return answer


async def cancellation(
    dp: EmulatorProcess, client: AnswerClock, task_id: str
) -> tuple[float, float]:
    """(answer to delivered cancellation, round trip of the canceled report), in seconds."""
    delivered = 0.0
    try:
        async with Heartbeat(client, task_id, interval=INTERVAL, lease_timeout=2):
            await dp.cancel_task(task_id)
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                delivered = anyio.current_time()
                raise
    except TaskStopped:
        pass
    return delivered - client.answered_at, client.round_trip


async def leaving(client: AnswerClock, task_id: str, in_flight: bool) -> float:
    """From the body's last line to the line after the block, in seconds."""
    async with Heartbeat(client, task_id, interval=INTERVAL, lease_timeout=2):
        await anyio.sleep(random.uniform(0.005, 0.03))
        if in_flight:
            client.call_started = anyio.Event()
            await client.call_started.wait()  # a report has left; its answer is 20 ms away
            await anyio.sleep(random.uniform(0.001, 0.01))
        assert bool(client.in_flight) == in_flight
        body_ended = anyio.current_time()
    return anyio.current_time() - body_ended


async def measure(runs: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {
        "cancel": [],
        "round trip": [],
        "leave": [],
        "leave, in flight": [],
    }
    async with EmulatorProcess(record_calls=False) as dp:
        task_ids = await add_tasks(dp, 3 * runs)
        async with bench_client(dp.url, 10) as raw:
            client = AnswerClock(raw)
            for _ in range(runs):
                latency, round_trip = await cancellation(dp, client, task_ids.pop())
                results["cancel"].append(latency)
                results["round trip"].append(round_trip)
            for _ in range(runs):
                results["leave"].append(await leaving(client, task_ids.pop(), in_flight=False))
            await dp.inject(Fault.delay(0.02), task_id=None, times=None)
            for _ in range(runs):
                results["leave, in flight"].append(
                    await leaving(client, task_ids.pop(), in_flight=True)
                )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    results = asyncio.run(measure(args.runs))
    labels = {
        "cancel": "`canceled: true` answered → body cancelled",
        "leave": "body ended → `async with` returned, heartbeat asleep",
        "leave, in flight": "body ended → `async with` returned, a report in flight",
        "round trip": "for scale: one report's HTTP round trip",
    }
    print(f"{args.runs} runs each\n")
    print("| from → to | p50 | p99 | max |")
    print("| --- | --- | --- | --- |")
    for key, label in labels.items():
        values = results[key]
        p50, p99, worst = (percentile(values, share) * 1000 for share in (0.5, 0.99, 1))
        print(f"| {label} | {p50:.2f} ms | {p99:.2f} ms | {worst:.2f} ms |")


if __name__ == "__main__":
    main()
