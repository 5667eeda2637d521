"""No process of a task outlives its task or its worker: `asyncheartbeat run` and `worker`
SIGKILLed mid-task, and commands that leave processes outside their process group."""

from __future__ import annotations

import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.abc
import pytest

from asyncheartbeat.testing import LocalDataPipeline

from .test_cli_jobs import ENV, FAST, command, finish, wait_for_output

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="Linux's promise: nothing is left"),
    pytest.mark.local_datapipeline(poll_timeout=0.2, report_timeout=2),
]

#: A command that leaves one child in its group and one that left it (its own session).
SPREADS = "sleep 300 & setsid sleep 300 & echo ready; wait"


def task_processes(marker: str, *, besides: int) -> list[tuple[int, str]]:
    """The live processes (pid, name) whose environment holds ``marker``, but ``besides``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.name) == besides or marker.encode() not in (proc / "environ").read_bytes():
                continue
            name, state = (proc / "stat").read_text().rsplit(")", 1)
        except (OSError, ValueError):
            continue
        if state.split()[0] != "Z":
            found.append((int(proc.name), name.split("(", 1)[1]))
    return found


async def until_true(condition: Callable[[], object], seconds: float = 10) -> None:
    """Look at ``condition()`` until it holds: no event says when another process ended."""
    with anyio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.02)


def marked() -> tuple[str, dict[str, str]]:
    marker = f"HB_TEST_MARK=task-{uuid.uuid4().hex}"
    key, value = marker.split("=")
    return marker, ENV | {key: value}


async def start_marked(argv: list[str], env: dict[str, str]) -> anyio.abc.Process:
    return await anyio.open_process(argv, env=env, stdout=-1, stderr=-1)


async def sigkill_when_both_sleeps_run(process: anyio.abc.Process, marker: str) -> None:
    await wait_for_output(process, "ready\n")

    def both_sleeps_run() -> bool:
        names = [name for _, name in task_processes(marker, besides=process.pid)]
        return names.count("sleep") == 2

    await until_true(both_sleeps_run)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    await process.aclose()


async def test_a_sigkilled_run_leaves_no_process_of_its_command(dp: LocalDataPipeline) -> None:
    """`run` SIGKILLed mid-task: its command, the child in its group and the one that left
    its session are all gone soon after (--grace 0.3)."""
    marker, env = marked()
    task_id = dp.add_task()
    argv = command(dp, "run", "--task-id", task_id, *FAST, "--grace", "0.3", "--", "sh", "-c",
                   SPREADS)  # fmt: skip
    process = await start_marked(argv, env)
    await sigkill_when_both_sleeps_run(process, marker)
    await until_true(lambda: not task_processes(marker, besides=process.pid))


async def test_a_sigkilled_worker_leaves_no_process_of_its_task(dp: LocalDataPipeline) -> None:
    """`worker` SIGKILLed while its command runs: nothing of the task is left."""
    marker, env = marked()
    dp.add_pipeline(worker_group="wg")
    argv = command(dp, "worker", "--worker-group", "wg", *FAST, "--grace", "0.3", "--", "sh",
                   "-c", SPREADS)  # fmt: skip
    process = await start_marked(argv, env)
    await sigkill_when_both_sleeps_run(process, marker)
    await until_true(lambda: not task_processes(marker, besides=process.pid))


async def test_run_stops_what_left_the_commands_session_when_it_ends(
    dp: LocalDataPipeline,
) -> None:
    """A command that exits 0 after `setsid sleep 300 &`: by the time `run` exits, the
    sleep is gone too, and the command's own status is kept."""
    marker, env = marked()
    task_id = dp.add_task()
    argv = command(dp, "run", "--task-id", task_id, *FAST, "--grace", "0.3", "--", "sh", "-c",
                   "setsid sleep 300 & exit 0")  # fmt: skip
    process = await start_marked(argv, env)
    status, _, err = await finish(process)
    assert status == 0, err
    assert task_processes(marker, besides=process.pid) == []


async def test_worker_stops_what_left_the_commands_session_before_reporting(
    dp: LocalDataPipeline,
) -> None:
    """`worker`: a command that exits 0 after `setsid sleep 300 &` is reported FINISHED
    only once nothing of it runs."""
    marker, env = marked()
    dp.add_pipeline(worker_group="wg")
    argv = command(dp, "worker", "--worker-group", "wg", *FAST, "--grace", "0.3", "--", "sh",
                   "-c", "setsid sleep 300 & exit 0")  # fmt: skip
    process = await start_marked(argv, env)
    left: list[tuple[int, str]] | None = None
    try:
        with anyio.fail_after(10):
            await dp.wait_for_calls(
                lambda calls: any(c.operation == "SetTaskStatus" for c in calls)
            )
            left = task_processes(marker, besides=process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        status, _, err = await finish(process)
    assert left == []
    assert status == 0, err
    [attempt] = dp.service.handed_out.values()
    assert attempt.status.value == "FINISHED"


async def test_a_sigkilled_runs_command_is_gone_by_its_lease_end_however_long_the_grace(
    dp: LocalDataPipeline,
) -> None:
    """`run` SIGKILLed while its command ignores SIGTERM, with --grace far longer than the
    lease: the command is killed as the lease ends, not after the grace, so that it never
    runs beside the copy the service hands out next."""
    marker, env = marked()
    task_id = dp.add_task()
    script = "trap '' TERM; echo ready; while :; do sleep 0.05; done"
    argv = command(dp, "run", "--task-id", task_id, "--interval", "0.2", "--lease-timeout",
                   "2", "--grace", "60", "--", "sh", "-c", script)  # fmt: skip
    process = await start_marked(argv, env)
    await wait_for_output(process, "ready\n")
    await dp.wait_for_calls(lambda _: len(dp.reports(task_id)) >= 2)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    await process.aclose()
    await until_true(lambda: not task_processes(marker, besides=process.pid), seconds=15)
