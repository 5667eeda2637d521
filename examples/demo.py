"""The embedded local Data Pipeline, and two ways in.

Part 1: two jobs under Heartbeat; one gets cancelled. Part 2: a TaskRunner polls for three
tasks: one finishes, one fails, one is cancelled while it runs; then the service tells the
runner to terminate.

Run it with `bash scripts/demo.sh`. It prints a timeline: every report, each cancellation
and its reason, each task's end, and what the service recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import anyio
from aiobotocore.session import get_session

from asyncheartbeat import Heartbeat, Task, TaskEvent, TaskRunner, TaskStopped
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
        who = "runner" if record.name == "asyncheartbeat.runner" else "heartbeat"
        say(who, f"{record.levelname.lower()}: {record.getMessage()}")


async def copy_rows(client: Any, task_id: str) -> None:
    """A job: copy rows in steps, reporting progress in a field."""
    try:
        async with Heartbeat(client, task_id, interval=INTERVAL, lease_timeout=5 * INTERVAL) as hb:
            say(task_id, "acknowledged; starting work")
            for step in range(1, STEPS + 1):
                await anyio.sleep(STEP_TIME)
                hb.set_field("rowsCopied", str(step * 1000))
            say(task_id, f"work done after {hb.beats} reports")
    except TaskStopped as stopped:
        say(task_id, f"stopped: {stopped.reason.name} ({stopped.detail}); no SetTaskStatus needed")
    else:
        say(task_id, "finished: the caller would now report FINISHED")


async def part_one(dp: LocalDataPipeline, client: Any) -> None:
    say("demo", "part 1: two jobs under Heartbeat")
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


running: dict[str, str] = {}  # command -> task id, while its handler runs
long_export_runs = anyio.Event()


async def handle(task: Task, hb: Heartbeat) -> None:
    """A TaskRunner's handler: the job named by the activity's command."""
    command = task.activity.strings["command"] if task.activity else "?"
    say(command, "handler running")
    running[command] = task.task_id
    if command == "long-export":
        long_export_runs.set()
    if command == "bad-input":
        await anyio.sleep(STEP_TIME)
        raise ValueError("row 17: 'yesterday' is not a date")
    for step in range(1, 5):
        await anyio.sleep(STEP_TIME)
        hb.set_field("step", str(step))


async def part_two(dp: LocalDataPipeline, client: Any) -> None:
    say("demo", "part 2: a TaskRunner, two tasks at a time")
    pipelines = {
        command: dp.add_pipeline(worker_group="demo", command=command, maximum_retries=0)
        for command in ("nightly-copy", "bad-input", "long-export")
    }
    ended: list[TaskEvent] = []
    all_ended = anyio.Event()

    def show(event: TaskEvent) -> None:
        if event.kind != "started":
            ended.append(event)
            if len(ended) == len(pipelines):
                all_ended.set()

    runner = TaskRunner(
        client, worker_group="demo", handler=handle, concurrency=2, on_event=show,
        interval=INTERVAL, lease_timeout=5 * INTERVAL, runner_heartbeat_interval=0.5,
    )  # fmt: skip
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        await long_export_runs.wait()
        await anyio.sleep(2 * STEP_TIME)
        say("service", "someone cancels long-export (SetStatus CANCEL)")
        dp.cancel_task(running["long-export"])
        await all_ended.wait()
        say("service", "tells the task runner to terminate")
        dp.set_terminate(True)
    for command, pipeline_id in pipelines.items():
        [attempt] = dp.service.pipelines[pipeline_id].attempts.values()
        errors = f", error {attempt.error_id}: {attempt.error_message}" if attempt.error_id else ""
        say("service", f"{command}: {attempt.status.value}, fields {attempt.fields}{errors}")


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
            # Reads that outlast PollForTask's long poll; one HTTP call per attempt.
            config=TaskRunner.client_config(retries={"total_max_attempts": 1}),
        ) as client:
            await part_one(dp, client)
            logger.setLevel(logging.INFO)  # part 2 without a line per report
            await part_two(dp, client)


if __name__ == "__main__":
    asyncio.run(main())
