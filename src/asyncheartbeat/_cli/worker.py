"""``asyncheartbeat worker``: poll a worker group and run a command for each task, as a
`TaskRunner`; SIGINT or SIGTERM shut it down."""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Callable
from typing import Any

import anyio

from asyncheartbeat._arguments import port, seconds_or_zero
from asyncheartbeat._command import (
    EXIT_OWN_FAILURE,
    activity_command,
    run_command,
    task_environment,
)
from asyncheartbeat._errors import HeartbeatError
from asyncheartbeat._fields import check_member
from asyncheartbeat._heartbeat import Heartbeat
from asyncheartbeat._reporter._admission import DEFAULT_POOL
from asyncheartbeat._runner import FailTask, PreconditionFalse, TaskEvent, TaskRunner
from asyncheartbeat._task import Task

from . import _metrics
from ._logging import LOG_BACKUPS, LOG_FILE, status
from ._options import add_common, client, count, exit_status
from ._signals import on_signals

#: ``worker``'s exit status when a task ended but its status never landed.
EXIT_UNREPORTED = 3


def add_parser(commands: Any) -> None:
    """Add ``worker`` and its options to the top parser's sub-commands.

    Args:
        commands: What ``add_subparsers`` of the top parser returned.
    """
    worker: argparse.ArgumentParser = commands.add_parser(
        "worker",
        help="poll a worker group and run a command for each task",
        description="Poll WORKER_GROUP for tasks and run CMD for each, with the task's ids and "
        "its activity's fields in the environment (ASYNCHEARTBEAT_TASK_ID, "
        "ASYNCHEARTBEAT_FIELD_<key>, the task object as JSON in the file "
        "ASYNCHEARTBEAT_TASK_FILE, and in ASYNCHEARTBEAT_TASK up to 64 KiB). Exit 0 reports "
        "FINISHED; any other status FAILED, with the end of CMD's standard error. SIGINT or "
        "SIGTERM stop polling and let running tasks finish within --shutdown-grace; a second one "
        "stops them at once.",
    )
    worker.add_argument("--worker-group", required=True, help="the worker group to poll")
    worker.add_argument(
        "--taskrunner-id", metavar="ID",
        help="this runner's id in ReportTaskRunnerHeartbeat (default: a new UUID)",
    )  # fmt: skip
    worker.add_argument(
        "--run-task-command", action="store_true",
        help="instead of one fixed CMD, run each task's own ShellCommandActivity command "
        "(sh -c COMMAND with its scriptArguments as $1, $2 ...): the pipeline's author then "
        "chooses what runs on this machine",
    )  # fmt: skip
    worker.add_argument(
        "--false-exit-status", type=exit_status, metavar="N",
        help="a command exiting with N reports FALSE (a precondition that does not hold)",
    )  # fmt: skip
    worker.add_argument(
        "--log-dir", metavar="DIR",
        help=f"also log to DIR/{LOG_FILE}, a new file every hour, the last "
        f"{LOG_BACKUPS} kept",
    )  # fmt: skip
    worker.add_argument(
        "--concurrency", type=count, default=1, metavar="N", help="tasks at once (default: 1)"
    )
    worker.add_argument(
        "--metrics-port", type=port, metavar="N",
        help="serve Prometheus metrics at http://HOST:N/metrics (0 picks a free port, which "
        "is printed); needs the prometheus extra: pip install 'asyncheartbeat[prometheus]'",
    )  # fmt: skip
    worker.add_argument(
        "--metrics-host", metavar="HOST",
        help=f"the address --metrics-port listens on (default: {_metrics.METRICS_HOST}, this "
        "machine only; 0.0.0.0 for a Prometheus elsewhere)",
    )  # fmt: skip
    worker.add_argument(
        "--shutdown-grace", type=seconds_or_zero, default=30.0, metavar="SECONDS",
        help="on shutdown, how long running tasks may go on (default: 30)",
    )  # fmt: skip
    add_common(worker)


def check(args: argparse.Namespace) -> None:
    """Refuse, naming the option, what parses but cannot work; bind ``--metrics-port``."""
    if not args.worker_group:
        raise ValueError("--worker-group must not be empty: PollForTask matches it exactly")
    check_member("PollForTaskInput", "workerGroup", args.worker_group, name="--worker-group")
    args.metrics_socket = _metrics.check(args)


async def execute(args: argparse.Namespace) -> int:
    """Run the worker until it is shut down; its exit status."""
    if args.metrics_socket is None:
        return await _run_worker(args, None)
    with args.metrics_socket:
        async with _metrics.served(args.metrics_socket) as metrics:
            return await _run_worker(args, metrics)


async def _run_worker(args: argparse.Namespace, metrics: Callable[[TaskEvent], None] | None) -> int:
    interrupted: list[int] = []

    async def handle(task: Task, hb: Heartbeat) -> None:
        argv = activity_command(task) if args.run_task_command else args.cmd
        with task_environment(task) as task_env:
            result = await run_command(
                argv, hb, grace=args.grace, env=os.environ | task_env, capture_stderr=True,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        if result.status == 0:
            return
        if result.status == args.false_exit_status:
            raise PreconditionFalse(f"{argv[0]} exited with status {result.status}")
        last_line = (result.stderr_tail.strip().splitlines() or [""])[-1]
        raise FailTask(
            f"{argv[0]} exited with status {result.status}: {last_line}".rstrip(": "),
            error_id="CommandFailed",
            stack_trace=result.stderr_tail or None,
        )

    cut_short = unreported = False

    def note(event: TaskEvent) -> None:
        nonlocal cut_short, unreported
        cut_short |= event.kind == "cancelled" and event.reason is None
        unreported |= event.kind == "unreported"
        if metrics is not None:
            metrics(event)

    # A long poll holds one connection: the tasks' reports need the others.
    async with client(args, pool=max(DEFAULT_POOL, args.concurrency + 2)) as datapipeline:
        runner = TaskRunner(
            datapipeline,
            worker_group=args.worker_group,
            handler=handle,
            concurrency=args.concurrency,
            interval=args.interval,
            lease_timeout=args.lease_timeout,
            shutdown_grace=args.shutdown_grace,
            taskrunner_id=args.taskrunner_id,
            on_event=note,
            stall_timeout=args.stall_timeout,
        )
        async with anyio.create_task_group() as tg:

            def stop(signum: int) -> None:
                interrupted.append(signum)
                status("stopping: no new tasks; running ones get --shutdown-grace")
                runner.stop()

            def abort(signum: int) -> None:
                nonlocal cut_short
                cut_short = True
                status("stopping now")
                tg.cancel_scope.cancel()

            tg.start_soon(on_signals, stop, abort)
            code = 0
            try:
                await runner.run()
            except HeartbeatError:  # the runner has logged why
                code = EXIT_OWN_FAILURE
            tg.cancel_scope.cancel()
    # A shutdown that let every task finish and be reported is a clean exit.
    if interrupted and cut_short:
        return 128 + interrupted[0]
    return EXIT_UNREPORTED if code == 0 and unreported else code
