"""``asyncheartbeat run``: run a command while heartbeating one task; its exit status says
how the task should be reported."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

import anyio

from asyncheartbeat._command import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    EXIT_OWN_FAILURE,
    EXIT_STATUS,
    run_command,
)
from asyncheartbeat._errors import CancelReason, TaskStopped
from asyncheartbeat._fields import check_member
from asyncheartbeat._heartbeat import Heartbeat

from ._logging import status
from ._options import add_common, client, field
from ._signals import on_signals

#: The exit status of a command line that cannot work, as argparse gives it.
EXIT_USAGE = 2

#: What `run` exits with: the one table behind ``--help`` and the docs (a test compares them).
EXIT_STATUSES: tuple[tuple[str, str], ...] = (
    ("the command's own", "it ran to its end (128 + N if signal N ended it, as shells say)"),
    (f"{EXIT_STATUS[CancelReason.STALLED]}",
     "the command stalled: no line of output for `--stall-timeout`; report the task FAILED"),
    (f"{EXIT_STATUS[CancelReason.REQUESTED]}", "the service cancelled the task (`canceled: true`)"),
    (f"{EXIT_STATUS[CancelReason.TASK_NOT_FOUND]}",
     "the task or its pipeline is gone (reassigned, deleted)"),
    (f"{EXIT_STATUS[CancelReason.LEASE_LOST]}",
     "the lease was lost: no report got through for `--lease-timeout`"),
    (f"{EXIT_STATUS[CancelReason.REJECTED]}",
     "the service refused the reports (credentials, permissions)"),
    (f"{EXIT_OWN_FAILURE}", "`asyncheartbeat` itself failed (no region, an unreachable "
     "endpoint, a first report never answered …)"),
    (f"{EXIT_NOT_EXECUTABLE}, {EXIT_NOT_FOUND}", "the command is not executable, or not found"),
    ("130, 143", "interrupted by SIGINT or SIGTERM"),
    (f"{EXIT_USAGE}", "a usage error (a bad option or task id, no command …)"),
)  # fmt: skip
EXIT_CODES = "exit status:\n" + "".join(
    f"  {code:<22} {meaning.replace('`', '')}\n" for code, meaning in EXIT_STATUSES
)


def add_parser(commands: Any) -> None:
    """Add ``run`` and its options to the top parser's sub-commands.

    Args:
        commands: What ``add_subparsers`` of the top parser returned.
    """
    run: argparse.ArgumentParser = commands.add_parser(
        "run",
        help="run a command while heartbeating a task",
        description="Run CMD as a subprocess while reporting progress on task ID. Lines CMD "
        "prints as 'asyncheartbeat: key=value' set progress fields. When the task is cancelled, "
        "reassigned or its lease lost, CMD's process group gets SIGTERM, then SIGKILL after "
        "--grace. SetTaskStatus is left to the caller, by the exit status.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--task-id", required=True, help="the task's id, from PollForTask")
    run.add_argument(
        "--field", type=field, action="append", default=[], metavar="KEY=VALUE",
        help="a progress field to report from the start (repeatable)",
    )  # fmt: skip
    add_common(run)


def check(args: argparse.Namespace) -> None:
    """Refuse, naming the option, what parses but cannot work."""
    check_member("ReportTaskProgressInput", "taskId", args.task_id, name="--task-id")


async def execute(args: argparse.Namespace) -> int:
    """Run ``args.cmd`` under its task's heartbeat until it ends or a signal stops it; the
    exit status as documented."""
    interrupted: list[int] = []
    async with client(args) as datapipeline, anyio.create_task_group() as tg:

        def interrupt(signum: int) -> None:
            interrupted.append(signum)
            tg.cancel_scope.cancel()

        tg.start_soon(on_signals, interrupt, interrupt)
        exit_status = await _run_under_heartbeat(datapipeline, args)
        tg.cancel_scope.cancel()
    return 128 + interrupted[0] if interrupted else exit_status


async def _run_under_heartbeat(datapipeline: Any, args: argparse.Namespace) -> int:
    """``args.cmd`` under task ``args.task_id``'s heartbeat; its exit status as documented."""
    task = f"task {args.task_id!r}"
    heartbeat = Heartbeat(
        datapipeline,
        args.task_id,
        interval=args.interval,
        lease_timeout=args.lease_timeout,
        fields=args.field,
        stall_timeout=args.stall_timeout,
    )
    command_started = False
    try:
        async with heartbeat as hb:
            status(f"{task}: running {shlex.join(args.cmd)}")
            command_started = True
            # Its standard error is read only to see its lines, under a stall watchdog.
            watched = args.stall_timeout is not None
            result = await run_command(args.cmd, hb, grace=args.grace, capture_stderr=watched)
    except TaskStopped as stopped:
        if stopped.reason is CancelReason.LEASE_LOST and heartbeat.beats == 0:
            # Never acknowledged: the task was never ours, and the cause is on this side.
            status(f"{task}: the service never answered the first report: {stopped.detail}")
            return EXIT_OWN_FAILURE
        what = "command stopped" if command_started else "command not started"
        status(f"{task}: {stopped.reason.value}, {what}: {stopped.detail}")
        return EXIT_STATUS[stopped.reason]
    except OSError as error:
        return _cannot_start(args.cmd[0], error)
    except anyio.get_cancelled_exc_class():
        if command_started:
            status(f"{task}: interrupted, command stopped")
        raise
    status(f"{task}: command exited with status {result.status}")
    return result.status


def _cannot_start(command: str, error: OSError) -> int:
    status(f"cannot run {command!r}: {error.strerror or error}")
    if isinstance(error, FileNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, PermissionError):
        return EXIT_NOT_EXECUTABLE
    return EXIT_OWN_FAILURE
