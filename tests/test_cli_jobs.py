"""`asyncheartbeat run` and `asyncheartbeat worker`, run as the user runs them, against the
local Data Pipeline."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from asyncheartbeat.testing import Fault, LocalDataPipeline

from .conftest import ACCESS_KEY, SECRET_KEY, make_client

# Each test starts Python and aiobotocore in a process of its own (about a second): they
# run with the slow checks, after the quick suite.
pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.slow,
    pytest.mark.local_datapipeline(poll_timeout=0.2, report_timeout=2),
]

ENV = os.environ | {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
FAST = ["--interval", "0.1", "--lease-timeout", "1"]


def command(dp: LocalDataPipeline, subcommand: str, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "asyncheartbeat", subcommand,
        "--endpoint-url", dp.url, "--region", "us-east-1", *args,
    ]  # fmt: skip


async def start(argv: list[str]) -> anyio.abc.Process:
    return await anyio.open_process(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)


async def wait_for_output(process: anyio.abc.Process, text: str) -> str:
    """Read the command's standard output until ``text`` appears; return what was read."""
    assert process.stdout is not None
    seen = b""
    with anyio.fail_after(10):
        while text.encode() not in seen:
            seen += await process.stdout.receive()
    return seen.decode()


async def finish(process: anyio.abc.Process, out_so_far: str = "") -> tuple[int, str, str]:
    """Wait for the process; its status, standard output and standard error."""
    out, err = out_so_far.encode(), b""

    async def read(stream: Any, into: str) -> None:
        nonlocal out, err
        async for chunk in stream:
            if into == "out":
                out += chunk
            else:
                err += chunk

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read, process.stdout, "out")
            tg.start_soon(read, process.stderr, "err")
            await process.wait()
    await process.aclose()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_run_reports_while_the_command_runs_and_exits_with_its_status(
    dp: LocalDataPipeline,
) -> None:
    """Field lines set progress fields (and are not shown); other output passes through;
    the command's own status is the exit status."""
    task_id = dp.add_task()
    script = 'echo hello; echo "asyncheartbeat: step=copy"; sleep 0.3; exit 3'
    process = await start(command(dp, "run", "--task-id", task_id, *FAST,
                                  "--field", "stage=start", "--", "sh", "-c", script))  # fmt: skip
    status, out, err = await finish(process)
    assert status == 3, err
    assert out == "hello\n"
    assert dp.attempt(task_id).fields == {"stage": "start", "step": "copy"}
    assert len(dp.reports(task_id)) >= 3


async def test_run_stops_a_cancelled_command_with_sigterm(dp: LocalDataPipeline) -> None:
    """Cancelled by the service: SIGTERM to the command, exit status 121."""
    task_id = dp.add_task()
    script = 'trap "echo terminated; exit 0" TERM; echo ready; while :; do sleep 0.05; done'
    process = await start(command(dp, "run", "--task-id", task_id, *FAST, "--", "sh", "-c", script))
    ready = await wait_for_output(process, "ready\n")
    dp.cancel_task(task_id)
    status, out, err = await finish(process, ready)
    assert status == 121, err
    assert out == "ready\nterminated\n"
    assert f"task {task_id!r}: requested, command stopped" in err


COUNT_SIGTERMS = """
import os, signal, sys, time
read, write = os.pipe()
os.set_blocking(write, False)
signal.set_wakeup_fd(write)  # one byte per signal delivered, however close together
signal.signal(signal.SIGTERM, lambda *_: None)
print("ready", flush=True)
os.read(read, 1)
time.sleep(0.5)  # a second signal came ms after the first; none must come: nothing to wait on
os.set_blocking(read, False)
try:
    more = len(os.read(read, 64))
except BlockingIOError:
    more = 0
print(f"sigterms={1 + more}", flush=True)
"""


async def test_a_stopped_command_gets_sigterm_once(dp: LocalDataPipeline) -> None:
    """Cancelled by the service: the command gets one SIGTERM, not one for its process
    group and another for itself (a trap would run twice)."""
    task_id = dp.add_task()
    argv = command(dp, "run", "--task-id", task_id, *FAST, "--", sys.executable, "-c",
                   COUNT_SIGTERMS)  # fmt: skip
    process = await start(argv)
    ready = await wait_for_output(process, "ready\n")
    dp.cancel_task(task_id)
    status, out, err = await finish(process, ready)
    assert out == "ready\nsigterms=1\n", err
    assert status == 121, err


async def test_run_kills_a_command_that_ignores_sigterm(dp: LocalDataPipeline) -> None:
    """A command that ignores SIGTERM gets SIGKILL after --grace, children and all."""
    task_id = dp.add_task()
    script = 'trap "" TERM; echo $$; while :; do sleep 0.05; done'
    process = await start(command(dp, "run", "--task-id", task_id, *FAST, "--grace", "0.3",
                                  "--", "sh", "-c", script))  # fmt: skip
    pid = await wait_for_output(process, "\n")
    dp.delete_pipeline(dp.attempt(task_id).pipeline_id)
    started = anyio.current_time()
    status, _, err = await finish(process, pid)
    assert status == 122, err
    assert "SIGKILL" in err
    assert anyio.current_time() - started >= 0.3
    with anyio.fail_after(2):
        # No event says when init has reaped the SIGKILLed children: look until they are gone.
        while group_alive(int(pid)):  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def test_run_leaves_no_process_of_the_commands_group_behind(dp: LocalDataPipeline) -> None:
    """A command that exits 0 but leaves `sleep 60 &` behind: the sleep is stopped too."""
    task_id = dp.add_task()
    script = "sleep 60 & echo $$; exit 0"
    process = await start(command(dp, "run", "--task-id", task_id, *FAST, "--grace", "0.3",
                                  "--", "sh", "-c", script))  # fmt: skip
    status, out, err = await finish(process)
    assert status == 0, err
    with anyio.fail_after(2):
        while group_alive(int(out)):  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def test_run_keeps_reporting_while_its_own_reader_stops_reading(
    dp: LocalDataPipeline,
) -> None:
    """The command prints 1 MB while nobody reads `run`'s output: the reports go on (its
    output path never blocks the event loop), and every byte arrives once it is read."""
    task_id = dp.add_task()
    # The command (not this test) pauses a second after its 1 MB, while nobody reads.
    script = (
        "import sys, select; sys.stdout.write(('x' * 99 + '\\n') * 10_000); sys.stdout.flush();"
        " select.select([], [], [], 1); print('done')"
    )
    process = await start(command(dp, "run", "--task-id", task_id, *FAST,
                                  "--", sys.executable, "-c", script))  # fmt: skip
    with anyio.fail_after(10):
        await dp.wait_for_reports(task_id, 1)
        reports_before = len(dp.reports(task_id))
        await dp.wait_for_reports(task_id, reports_before + 5)  # while nobody reads
    status, out, err = await finish(process)
    assert status == 0, err
    assert out == "x" * 99 + "\n" * 0 + ("\n" + "x" * 99) * 9_999 + "\ndone\n"


async def test_run_exits_on_sigterm_while_nobody_reads_its_output(dp: LocalDataPipeline) -> None:
    """`yes` fills `run`'s output and nobody reads it: SIGTERM still ends `run` with 143
    (the write that can never finish does not keep the process alive)."""
    task_id = dp.add_task()
    process = await start(command(dp, "run", "--task-id", task_id, *FAST, "--", "yes"))
    with anyio.fail_after(30):  # a bound: starting Python and aiobotocore under load is slow
        reports = len(await dp.wait_for_reports(task_id, 1))
        await dp.wait_for_reports(task_id, reports + 3)  # the output pipe is full by now
        process.send_signal(signal.SIGTERM)
        await process.wait()
    await process.aclose()
    assert process.returncode == 143


async def test_a_line_longer_than_the_limit_passes_through_unread(dp: LocalDataPipeline) -> None:
    """A field line longer than the limit is shown, not read for a field; lines after it are."""
    task_id = dp.add_task()
    long_value = "y" * 100_000
    script = f'printf "asyncheartbeat: big={long_value}\\n"; echo "asyncheartbeat: small=1"'
    process = await start(command(dp, "run", "--task-id", task_id, *FAST, "--", "sh", "-c", script))
    status, out, err = await finish(process)
    assert status == 0, err
    assert out == f"asyncheartbeat: big={long_value}\n", err
    assert dp.attempt(task_id).fields == {"small": "1"}


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid``, not a zombie, still runs (Linux /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@pytest.mark.parametrize(
    ("fault", "expected"),
    [(Fault.error("InternalServiceError"), 123), (Fault.error("AccessDeniedException"), 124)],
)
async def test_run_exit_status_says_why_the_command_was_stopped(
    dp: LocalDataPipeline, fault: Fault, expected: int
) -> None:
    """Lease lost (no report got through) and refused reports have statuses of their own."""
    task_id = dp.add_task()
    process = await start(command(dp, "run", "--task-id", task_id, *FAST, "--", "sleep", "30"))
    with anyio.fail_after(10):
        await dp.wait_for_reports(task_id, 1)
    dp.inject(fault, task_id=task_id, times=None)
    status, _, err = await finish(process)
    assert status == expected, err


async def test_run_stops_a_command_that_goes_silent_and_exits_120(dp: LocalDataPipeline) -> None:
    """--stall-timeout: output lines, field lines and standard error lines each keep the
    command going past the stall timeout; silent for it, the command gets SIGTERM and run
    exits 120."""
    task_id = dp.add_task()
    script = (
        'trap "echo terminated; exit 0" TERM; '
        "for i in 1 2 3 4 5; do echo out-$i; sleep 0.3; done; "
        'for i in 1 2 3 4 5; do echo "asyncheartbeat: step=$i"; sleep 0.3; done; '
        "for i in 1 2 3 4 5; do echo err-$i >&2; sleep 0.3; done; "
        "while :; do sleep 0.05; done"
    )
    process = await start(command(dp, "run", "--task-id", task_id, *FAST, "--stall-timeout",
                                  "1", "--", "sh", "-c", script))  # fmt: skip
    status, out, err = await finish(process)
    assert status == 120, err
    assert out == "".join(f"out-{i}\n" for i in range(1, 6)) + "terminated\n"
    assert "err-5\n" in err
    assert dp.attempt(task_id).fields == {"step": "5"}
    assert f"task {task_id!r}: stalled, command stopped: no progress for 1 s" in err


async def test_run_of_a_missing_command_exits_127(dp: LocalDataPipeline) -> None:
    """A command that is not there: 127, as shells say it."""
    task_id = dp.add_task()
    process = await start(command(dp, "run", "--task-id", task_id, "--", "no-such-command-x"))
    status, _, err = await finish(process)
    assert status == 127, err
    assert "no-such-command-x" in err


async def test_run_interrupted_stops_the_command_and_exits_130(dp: LocalDataPipeline) -> None:
    """Ctrl-C: the command is stopped, nothing more is reported, exit status 130."""
    task_id = dp.add_task()
    script = 'trap "echo terminated; exit 0" TERM; echo ready; while :; do sleep 0.05; done'
    process = await start(command(dp, "run", "--task-id", task_id, *FAST, "--", "sh", "-c", script))
    ready = await wait_for_output(process, "ready\n")
    process.send_signal(signal.SIGINT)
    status, out, err = await finish(process, ready)
    assert status == 130, err
    assert out == "ready\nterminated\n"
    assert f"task {task_id!r}: interrupted, command stopped" in err


async def test_worker_runs_the_command_for_each_task_and_reports_how_it_ended(
    dp: LocalDataPipeline,
) -> None:
    """Exit 0 → FINISHED; otherwise FAILED with the end of standard error. The task's
    fields are in the environment. SIGTERM ends the worker."""
    good = dp.add_pipeline(worker_group="wg", command="ok")
    bad = dp.add_pipeline(worker_group="wg", command="bad", maximum_retries=0)
    script = (
        'echo "asyncheartbeat: seen=$ASYNCHEARTBEAT_FIELD_command"; '
        'if [ "$ASYNCHEARTBEAT_FIELD_command" = ok ]; then exit 0; fi; echo boom >&2; exit 4'
    )
    process = await start(command(dp, "worker", "--worker-group", "wg", "--concurrency", "2",
                                  *FAST, "--", "sh", "-c", script))  # fmt: skip
    with anyio.fail_after(10):
        await dp.wait_for_calls(
            lambda calls: len([c for c in calls if c.operation == "SetTaskStatus"]) == 2
        )
    process.send_signal(signal.SIGTERM)
    status, _, err = await finish(process)
    assert status == 0, err  # a shutdown that cut no task short is a clean exit
    by_pipeline = {a.pipeline_id: a for a in dp.service.handed_out.values()}
    assert (by_pipeline[good].status.value, by_pipeline[good].fields["seen"]) == ("FINISHED", "ok")
    failed = by_pipeline[bad]
    assert (failed.status.value, failed.error_id) == ("FAILED", "CommandFailed")
    assert failed.error_message == "sh exited with status 4: boom"
    assert failed.error_stack_trace == "boom\n"


async def test_worker_reports_a_silent_command_failed_as_stalled(dp: LocalDataPipeline) -> None:
    """--stall-timeout: a command that prints a line and then hangs is stopped, and its task
    reported FAILED with errorId TaskStalled."""
    dp.add_pipeline(worker_group="wg", maximum_retries=0)
    process = await start(command(dp, "worker", "--worker-group", "wg", *FAST,
                                  "--stall-timeout", "0.5", "--grace", "0.2",
                                  "--", "sh", "-c", "echo started; sleep 30"))  # fmt: skip
    with anyio.fail_after(10):
        await dp.wait_for_calls(lambda calls: any(c.operation == "SetTaskStatus" for c in calls))
    process.send_signal(signal.SIGTERM)
    status, out, err = await finish(process)
    assert status == 0, err
    assert out == "started\n"
    [attempt] = dp.service.handed_out.values()
    assert (attempt.status.value, attempt.error_id, attempt.error_message) == (
        "FAILED", "TaskStalled", "no progress for 0.5 s",
    )  # fmt: skip


async def test_worker_cut_short_by_sigterm_exits_143(dp: LocalDataPipeline) -> None:
    """SIGTERM while a command runs past --shutdown-grace: it is stopped, its task left
    unreported for the service to reassign, and the exit status says SIGTERM."""
    dp.add_pipeline(worker_group="wg")
    process = await start(command(dp, "worker", "--worker-group", "wg", *FAST,
                                  "--shutdown-grace", "0.2", "--grace", "0.2",
                                  "--", "sh", "-c", "echo started; sleep 30"))  # fmt: skip
    started = await wait_for_output(process, "started\n")
    process.send_signal(signal.SIGTERM)
    status, _, err = await finish(process, started)
    assert status == 143, err
    assert not [c for c in dp.calls if c.operation == "SetTaskStatus"]


async def test_run_against_an_unreachable_endpoint_exits_125_saying_so() -> None:
    """Nothing listens at the endpoint: the first report is never answered, which is
    asyncheartbeat's own failure (125), not a lost lease, and one line says why."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    argv = [sys.executable, "-m", "asyncheartbeat", "run", "--endpoint-url", url,
            "--region", "us-east-1", "--task-id", "t", *FAST, "--", "true"]  # fmt: skip
    status, _, err = await finish(await start(argv))
    assert status == 125, err
    assert "never answered the first report" in err
    assert "command not started" not in err


async def test_worker_runs_each_tasks_own_command_as_the_java_task_runner_would(
    dp: LocalDataPipeline, tmp_path: Path
) -> None:
    """--run-task-command runs the activity's command with its scriptArguments; scriptUri,
    which it cannot honour, fails that task by name; --false-exit-status reports FALSE;
    --taskrunner-id names the runner; --log-dir keeps a log file."""
    args = [{"key": "scriptArgument", "stringValue": v} for v in ("a b", "c")]
    ok = dp.add_pipeline(worker_group="wg", command='echo "asyncheartbeat: got=$1|$2"',
                         fields=args)  # fmt: skip
    s3 = dp.add_pipeline(worker_group="wg", command="true", maximum_retries=0,
                         fields=[{"key": "scriptUri", "stringValue": "s3://b/run.sh"}])  # fmt: skip
    false = dp.add_pipeline(worker_group="wg", command="exit 3")
    process = await start(command(dp, "worker", "--worker-group", "wg", "--run-task-command",
                                  "--false-exit-status", "3", "--taskrunner-id", "runner-7",
                                  "--log-dir", str(tmp_path / "logs"), "--concurrency", "3",
                                  *FAST))  # fmt: skip
    with anyio.fail_after(10):
        await dp.wait_for_calls(
            lambda calls: len([c for c in calls if c.operation == "SetTaskStatus"]) == 3
        )
    process.send_signal(signal.SIGTERM)
    status, _, err = await finish(process)
    assert status == 0, err
    by_pipeline = {a.pipeline_id: a for a in dp.service.handed_out.values()}
    assert (by_pipeline[ok].status.value, by_pipeline[ok].fields["got"]) == ("FINISHED", "a b|c")
    assert (by_pipeline[s3].status.value, by_pipeline[s3].error_id) == (
        "FAILED", "UnsupportedActivity",
    )  # fmt: skip
    assert "scriptUri" in (by_pipeline[s3].error_message or "")
    assert by_pipeline[false].status.value == "FALSE"
    heartbeat = next(c for c in dp.calls if c.operation == "ReportTaskRunnerHeartbeat")
    assert heartbeat.params["taskrunnerId"] == "runner-7"
    assert "FALSE" in (tmp_path / "logs" / "asyncheartbeat-worker.log").read_text()


async def test_worker_whose_polls_are_refused_exits_125_saying_so_once(
    dp: LocalDataPipeline,
) -> None:
    """AccessDenied on PollForTask: exit status 125, and one line says why."""
    dp.inject(Fault.error("AccessDeniedException"), operation="PollForTask", times=None)
    process = await start(command(dp, "worker", "--worker-group", "wg", *FAST, "--", "true"))
    status, _, err = await finish(process)
    assert status == 125, err
    assert err.count("PollForTask refused") == 1, err


async def test_worker_passes_a_large_task_object_through_a_file(dp: LocalDataPipeline) -> None:
    """A task of 10 objects of 14 KB each (within the service's limits, over Linux's 128 KiB
    for one variable) reaches the command whole in ASYNCHEARTBEAT_TASK_FILE, which is
    removed after the task; ASYNCHEARTBEAT_TASK is left out, and the task FINISHED."""
    big = [{"key": f"part{i}", "stringValue": "z" * 7_000} for i in range(2)]
    refs = [{"key": "dependsOn", "refValue": f"Data{i}"} for i in range(9)]
    activity = [{"key": "type", "stringValue": "ShellCommandActivity"},
                {"key": "command", "stringValue": "true"},
                {"key": "workerGroup", "stringValue": "wg"}, *big, *refs]  # fmt: skip
    objects = [{"id": "Activity", "name": "Activity", "fields": activity}] + [
        {"id": f"Data{i}", "name": f"Data{i}", "fields": big} for i in range(9)
    ]
    async with make_client(dp) as client:
        pipeline_id = (await client.create_pipeline(name="big", uniqueId="big"))["pipelineId"]
        put = await client.put_pipeline_definition(pipelineId=pipeline_id, pipelineObjects=objects)
        assert not put["errored"], put
        await client.activate_pipeline(pipelineId=pipeline_id)
    script = (
        "import json, os; path = os.environ['ASYNCHEARTBEAT_TASK_FILE'];"
        " task = json.load(open(path)); sizes = [len(json.dumps(o)) for o in"
        " task['objects'].values()];"
        " print('asyncheartbeat: file=' + path);"
        " print('asyncheartbeat: seen=%d/%s' % (len([s for s in sizes if s >= 14_000]),"
        " 'ASYNCHEARTBEAT_TASK' in os.environ))"
    )
    process = await start(command(dp, "worker", "--worker-group", "wg", *FAST,
                                  "--", sys.executable, "-c", script))  # fmt: skip
    with anyio.fail_after(30):
        await dp.wait_for_calls(lambda calls: any(c.operation == "SetTaskStatus" for c in calls))
    process.send_signal(signal.SIGTERM)
    status, _, err = await finish(process)
    assert status == 0, err
    [attempt] = dp.service.handed_out.values()
    assert attempt.status.value == "FINISHED", attempt.error_message
    assert attempt.fields["seen"] == "10/False"  # ten objects of 14 KB, not in the variable
    assert not await anyio.Path(attempt.fields["file"]).exists()


async def test_worker_whose_status_never_landed_exits_3(dp: LocalDataPipeline) -> None:
    """SetTaskStatus hangs past the lease: the task is unreported, and a worker stopped
    by SIGTERM afterwards does not exit 0 but 3, saying so."""
    dp.inject(Fault.hang(), operation="SetTaskStatus", times=None)
    dp.add_pipeline(worker_group="wg")
    process = await start(command(dp, "worker", "--worker-group", "wg", *FAST, "--", "true"))
    with anyio.fail_after(10):
        await dp.wait_for_calls(lambda calls: any(c.operation == "SetTaskStatus" for c in calls))
    process.send_signal(signal.SIGTERM)  # its grace outlasts the lease the status waits for
    status, _, err = await finish(process)
    assert status == 3, err
    assert "its status was not reported" in err
    [attempt] = dp.service.handed_out.values()
    assert attempt.status.value != "FINISHED"
