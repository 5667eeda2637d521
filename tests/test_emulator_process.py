"""The emulator as a command and as a process of its own, and the pytest plugin's fixtures."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncheartbeat import CancelReason, Heartbeat, TaskStopped
from asyncheartbeat._cli import build_parser, main
from asyncheartbeat.testing import EmulatorProcess, Fault, LocalDataPipeline, RateLimit
from asyncheartbeat.testing._emulator.control import Remote
from asyncheartbeat.testing._emulator.moves import MOVES
from asyncheartbeat.testing._emulator.options import Options

from .conftest import make_client


@pytest.mark.asyncio
async def test_a_heartbeat_against_an_emulator_process() -> None:
    """In its own process, the emulator is driven through the same moves, awaited."""
    async with EmulatorProcess(seed=1) as dp:
        task_id = await dp.add_task()
        await dp.inject(Fault.error("ThrottlingException"), task_id=task_id)
        async with make_client(dp) as client:
            with anyio.fail_after(5), pytest.raises(TaskStopped) as caught:
                async with Heartbeat(client, task_id, interval=0.1, lease_timeout=1) as hb:
                    hb.set_field("stage", "copy")
                    await hb.beat()
                    await dp.cancel_task(task_id)
                    await anyio.sleep_forever()
        assert caught.value.reason is CancelReason.REQUESTED
        outcomes = [c.outcome for c in await dp.calls() if c.task_id == task_id]
        assert outcomes[:2] == ["error:ThrottlingException", "answered"]
        attempt = await dp.attempt(task_id)
        fields = {f["key"]: f.get("stringValue") for f in attempt["fields"]}
        assert attempt["pipelineId"].startswith("df-")
        assert (fields["@status"], fields["stage"]) == ("CANCELED", "copy")
        pid = dp.pid
    assert not still_running(pid)


def still_running(pid: int) -> bool:
    """Whether ``pid`` still runs: it exists (signal 0 asks without touching it) and is not
    a zombie waiting for whoever adopted it to reap it."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"


@pytest.mark.asyncio
async def test_an_emulator_process_answers_the_same_queries_as_local_data_pipeline() -> None:
    """reports, wait_for_reports and wait_for_calls, awaited, wait on what arrives."""
    async with EmulatorProcess() as dp:
        task_id = await dp.add_task()
        async with (
            make_client(dp) as client,
            Heartbeat(client, task_id, interval=0.05, lease_timeout=1),
        ):
            with anyio.fail_after(5):
                reports = await dp.wait_for_reports(task_id, 3)
        assert len(reports) >= 3
        assert all(r.operation == "ReportTaskProgress" for r in reports)
        assert len(await dp.reports(task_id)) >= len(reports)
        calls = await dp.wait_for_calls(lambda calls: len(calls) >= 3)
        assert calls[0].task_id == task_id


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_an_emulator_process_works_on_trio() -> None:
    """Its moves and queries speak plain HTTP over anyio: trio works as asyncio does."""
    async with EmulatorProcess() as dp:
        task_id = await dp.add_task()
        await dp.cancel_task(task_id)
        fields = {f["key"]: f.get("stringValue") for f in (await dp.attempt(task_id))["fields"]}
        assert fields["@status"] == "CANCELED"
        assert await dp.reports(task_id) == []
        pid = dp.pid
    assert not still_running(pid)


@pytest.mark.asyncio
async def test_an_emulator_process_dies_with_the_process_that_started_it() -> None:
    """A parent killed with SIGKILL (no cleanup runs) does not leave its emulator behind."""
    parent_code = (
        "import anyio, sys\n"
        "from asyncheartbeat.testing import EmulatorProcess\n"
        "async def main():\n"
        "    async with EmulatorProcess() as dp:\n"
        "        print(dp.pid, flush=True)\n"
        "        await anyio.sleep_forever()\n"
        "anyio.run(main)\n"
    )
    async with await anyio.open_process([sys.executable, "-c", parent_code]) as parent:
        assert parent.stdout is not None
        with anyio.fail_after(30):
            child = int(await parent.stdout.receive())
        parent.kill()
        await parent.wait()
    with anyio.fail_after(10):
        # No event tells this process when another's orphan has gone: look until it has.
        while still_running(child):  # noqa: ASYNC110
            await anyio.sleep(0.02)


@pytest.mark.asyncio
async def test_a_refused_control_move_says_why() -> None:
    """A move the emulator cannot make raises naming the problem."""
    async with EmulatorProcess() as dp:
        with pytest.raises(ValueError, match="no task 'nope'"):
            await dp.cancel_task("nope")


def test_bad_process_options_are_refused_before_starting() -> None:
    """Timeouts are checked in this process, not discovered in the child's stderr."""
    with pytest.raises(ValueError, match="poll timeout"):
        EmulatorProcess(poll_timeout=0)


def test_an_endless_timeout_is_refused_as_the_heartbeats_options_are() -> None:
    """inf is no duration: the emulator's timeouts are checked by the library's own check."""
    with pytest.raises(ValueError, match="the report timeout must be a finite number"):
        LocalDataPipeline(report_timeout=float("inf"))


def test_the_command_refuses_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    """Wrong options exit with status 2 and a message naming the option."""
    for argv, word in (
        (["emulator", "--port", "70000"], "--port"),
        (["emulator", "--poll-timeout", "-1"], "--poll-timeout"),
        (["emulator", "--ack-timeout", "soon"], "--ack-timeout"),
        ([], "COMMAND"),
    ):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        assert word in capsys.readouterr().err


def test_the_command_says_when_it_cannot_listen(capsys: pytest.CaptureFixture[str]) -> None:
    """An address that cannot be bound is an error message and exit status 1, not a traceback."""
    assert main(["emulator", "--host", "192.0.2.1"]) == 1
    assert "cannot serve on 192.0.2.1:0" in capsys.readouterr().err


def test_python_dash_m_serves_and_stops_on_sigterm() -> None:
    """`python -m asyncheartbeat emulator` prints its URL first and exits 0 on SIGTERM."""
    with subprocess.Popen(
        [sys.executable, "-m", "asyncheartbeat", "emulator"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        process.terminate()
        assert process.wait(timeout=10) == 0


@pytest.mark.asyncio
@pytest.mark.local_datapipeline(report_timeout=0.3, poll_timeout=0.2)
async def test_the_plugin_fixtures_give_a_server_and_a_client(
    local_datapipeline: LocalDataPipeline, datapipeline_client: Any
) -> None:
    """The pytest11 fixtures serve a local Data Pipeline, with the marker's options."""
    assert local_datapipeline.service.timeouts.report == 0.3
    task_id = local_datapipeline.add_task()
    answer = await datapipeline_client.report_task_progress(taskId=task_id)
    assert answer["canceled"] is False
    assert "taskObject" not in await datapipeline_client.poll_for_task(workerGroup="none")


@pytest.mark.asyncio
async def test_an_emulator_process_writes_nothing_on_the_callers_stderr(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The child shares the caller's stderr: it prints no banner meant for a terminal."""
    async with EmulatorProcess() as dp:
        await dp.calls()
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("front", [LocalDataPipeline, EmulatorProcess])
def test_the_options_are_those_of_the_one_definition(front: type) -> None:
    """LocalDataPipeline's and EmulatorProcess's arguments are Options' fields, defaults and all."""
    fields = {field.name: field.default for field in dataclasses.fields(Options)}
    signature = inspect.signature(front).parameters
    assert {name: p.default for name, p in signature.items()} == fields


def test_the_options_go_to_the_child_as_they_were_given() -> None:
    """EmulatorProcess's argv, parsed by the emulator command, gives back the same options."""
    options = Options(
        port=4599, ack_timeout=0.1, poll_timeout=2.5, seed=7, record_calls=False,
        rate_limits={"PollForTask": RateLimit(0.5, 3)}, log_requests=True,
    )  # fmt: skip
    assert Options.from_args(build_parser().parse_args(["emulator", *options.argv()])) == options
    assert Options.from_args(build_parser().parse_args(["emulator"])) == Options(rate_limits=False)


def test_every_move_is_offered_by_each_face() -> None:
    """Each move of the table is a LocalDataPipeline method (or attribute), an awaited
    EmulatorProcess method and a ctl sub-command."""
    ctl_moves = build_parser().parse_args(["emulator", "ctl", "calls"]).usage
    assert ctl_moves.prog.endswith("ctl calls")
    for name, move in MOVES.items():
        assert hasattr(LocalDataPipeline, name) or name == "calls"
        assert isinstance(vars(EmulatorProcess)[name], Remote)
        args = build_parser().parse_args(
            [
                "emulator",
                "ctl",
                move.command,
                *(["hang"] * sum(p.required for p in move.parameters)),
            ]
        )
        assert args.move is move
