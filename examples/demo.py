"""Two jobs under Heartbeat against the embedded local Data Pipeline; one gets cancelled.

Run it with `bash scripts/demo.sh`. It prints a timeline: every report, the cancellation
and its reason, and the other job finishing with its last progress reported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from asyncheartbeat import Heartbeat, TaskCancelled
from asyncheartbeat.testing import LocalDataPipeline

INTERVAL = 0.5  # seconds between reports; 60 in production
STEPS = 8
STEP_TIME = 0.4
started = time.monotonic()


def say(who: str, text: str) -> None:
    print(f"[+{time.monotonic() - started:5.2f}s] {who:<12} {text}", flush=True)


class Timeline(logging.Handler):
    """Shows the library's own log lines on the timeline."""

    def emit(self, record: logging.LogRecord) -> None:
        say("heartbeat", f"{record.levelname.lower()}: {record.getMessage()}")


async def copy_rows(client: Any, task_id: str) -> None:
    """A job: copy rows in steps, reporting progress in a field."""
    try:
        async with Heartbeat(client, task_id, interval=INTERVAL, lease_timeout=5 * INTERVAL) as hb:
            say(task_id, "acknowledged; starting work")
            for step in range(1, STEPS + 1):
                await anyio.sleep(STEP_TIME)
                hb.set_field("rowsCopied", str(step * 1000))
            say(task_id, f"work done after {hb.beats} reports")
    except TaskCancelled as stopped:
        say(task_id, f"stopped: {stopped.reason.name} ({stopped.detail}); no SetTaskStatus needed")
    else:
        say(task_id, "finished: the caller would now report FINISHED")


async def main() -> None:
    logger = logging.getLogger("asyncheartbeat")
    logger.addHandler(Timeline())
    logger.setLevel(logging.DEBUG)

    async with LocalDataPipeline() as dp:
        say("service", f"local Data Pipeline listening on {dp.url}")
        async with get_session().create_client(
            "datapipeline",
            region_name="us-east-1",
            endpoint_url=dp.url,
            aws_access_key_id="demo",
            aws_secret_access_key="demo",
            config=AioConfig(retries={"total_max_attempts": 1}),
        ) as client:
            orders, users = dp.add_task("copy-orders"), dp.add_task("copy-users")
            async with anyio.create_task_group() as tg:
                tg.start_soon(copy_rows, client, orders)
                tg.start_soon(copy_rows, client, users)
                await anyio.sleep(STEPS * STEP_TIME / 2)
                say("service", f"someone cancels {users} (SetStatus CANCEL)")
                dp.cancel_task(users)
        for task_id in (orders, users):
            task = dp.attempt(task_id)
            say("service", f"{task_id}: {len(dp.reports(task_id))} reports, fields {task.fields}")


if __name__ == "__main__":
    asyncio.run(main())
