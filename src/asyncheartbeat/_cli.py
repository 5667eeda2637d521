"""The command line (also ``python -m asyncheartbeat``): ``run`` a command under a task's
heartbeat, run a ``worker`` that polls for tasks and runs a command for each, or serve a
local Data Pipeline (``emulator``)."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import logging.handlers
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ._arguments import number, port, positive_seconds, seconds_or_zero
from ._command import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    EXIT_OWN_FAILURE,
    EXIT_STATUS,
    activity_command,
    run_command,
    task_environment,
)
from ._errors import CancelReason, HeartbeatError, TaskStopped
from ._fields import check_field, check_member
from ._heartbeat import Heartbeat
from ._log import one_line
from ._reporter._admission import DEFAULT_POOL
from ._runner import FailTask, PreconditionFalse, TaskEvent, TaskRunner
from ._task import Task
from ._timing import Timing
from .testing._emulator import command as _emulator

#: The exit status of a command line that cannot work, as argparse gives it.
EXIT_USAGE = 2
#: ``worker``'s exit status when a task ended but its status never landed.
EXIT_UNREPORTED = 3
#: ``worker --metrics-port``: the address it listens on unless --metrics-host says another.
METRICS_HOST = "127.0.0.1"
#: ``worker --log-dir``: the log file, and how many hourly files are kept (a week's).
LOG_FILE = "asyncheartbeat-worker.log"
LOG_BACKUPS = 168


def _exit_status(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 255:
        raise argparse.ArgumentTypeError(f"{text!r} is not an exit status from 1 to 255")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _field(text: str) -> dict[str, str]:
    key, equals, value = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    try:
        check_field(key, "stringValue", value)
    except ValueError as problem:
        raise argparse.ArgumentTypeError(str(problem)) from None
    return {"key": key, "stringValue": value}


def _add_common(command: argparse.ArgumentParser) -> None:
    """AWS settings and heartbeat timing, shared by run and worker; and the sub-command's
    own parser, so that a usage error shows the sub-command's usage."""
    command.set_defaults(usage=command)
    aws = command.add_argument_group("AWS (credentials and profile come from the environment)")
    aws.add_argument("--region", help="AWS region (default: from the environment or profile)")
    aws.add_argument("--endpoint-url", help="another endpoint, such as a local Data Pipeline")
    timing = command.add_argument_group("heartbeat")
    timing.add_argument(
        "--interval", type=positive_seconds, default=60.0, metavar="SECONDS",
        help="seconds between progress reports (default: 60)",
    )  # fmt: skip
    timing.add_argument(
        "--lease-timeout", type=positive_seconds, default=300.0, metavar="SECONDS",
        help="stop the command after this long without an answered report (default: 300)",
    )  # fmt: skip
    timing.add_argument(
        "--stall-timeout", type=number, metavar="SECONDS",
        help="stop CMD when it has printed no line (on standard output or error) for this "
        "long: a stall (run exits with 120; worker reports the task FAILED, errorId "
        "TaskStalled); default: never",
    )  # fmt: skip
    timing.add_argument(
        "--grace", type=seconds_or_zero, default=10.0, metavar="SECONDS",
        help="after SIGTERM, wait this long before SIGKILL (default: 10)",
    )  # fmt: skip
    command.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")


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
    f"  {status:<22} {meaning.replace('`', '')}\n" for status, meaning in EXIT_STATUSES
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asyncheartbeat", description="Keep AWS Data Pipeline tasks alive; test them locally."
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {importlib.metadata.version('asyncheartbeat')}",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
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
        "--field", type=_field, action="append", default=[], metavar="KEY=VALUE",
        help="a progress field to report from the start (repeatable)",
    )  # fmt: skip
    _add_common(run)
    worker = commands.add_parser(
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
        "--false-exit-status", type=_exit_status, metavar="N",
        help="a command exiting with N reports FALSE (a precondition that does not hold)",
    )  # fmt: skip
    worker.add_argument(
        "--log-dir", metavar="DIR",
        help=f"also log to DIR/{LOG_FILE}, a new file every hour, the last "
        f"{LOG_BACKUPS} kept",
    )  # fmt: skip
    worker.add_argument(
        "--concurrency", type=_count, default=1, metavar="N", help="tasks at once (default: 1)"
    )
    worker.add_argument(
        "--metrics-port", type=port, metavar="N",
        help="serve Prometheus metrics at http://HOST:N/metrics (0 picks a free port, which "
        "is printed); needs the prometheus extra: pip install 'asyncheartbeat[prometheus]'",
    )  # fmt: skip
    worker.add_argument(
        "--metrics-host", metavar="HOST",
        help=f"the address --metrics-port listens on (default: {METRICS_HOST}, this machine "
        "only; 0.0.0.0 for a Prometheus elsewhere)",
    )  # fmt: skip
    worker.add_argument(
        "--shutdown-grace", type=seconds_or_zero, default=30.0, metavar="SECONDS",
        help="on shutdown, how long running tasks may go on (default: 30)",
    )  # fmt: skip
    _add_common(worker)
    _emulator.add_parser(commands)
    return parser


@asynccontextmanager
async def _client(args: argparse.Namespace, *, pool: int = DEFAULT_POOL) -> AsyncIterator[Any]:
    from aiobotocore.session import get_session  # noqa: PLC0415 - only where a client is made

    async with get_session().create_client(
        "datapipeline",
        region_name=args.region,
        endpoint_url=args.endpoint_url,
        config=TaskRunner.client_config(max_pool_connections=pool),
    ) as client:
        yield client


async def _on_signals(first: Callable[[int], object], second: Callable[[int], object]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        handlers = iter((first, second))
        async for signum in signals:
            next(handlers, second)(signum)


async def _run(args: argparse.Namespace) -> int:
    interrupted: list[int] = []
    async with _client(args) as client, anyio.create_task_group() as tg:

        def interrupt(signum: int) -> None:
            interrupted.append(signum)
            tg.cancel_scope.cancel()

        tg.start_soon(_on_signals, interrupt, interrupt)
        status = await _run_under_heartbeat(client, args)
        tg.cancel_scope.cancel()
    return 128 + interrupted[0] if interrupted else status


async def _run_under_heartbeat(client: Any, args: argparse.Namespace) -> int:
    """``args.cmd`` under task ``args.task_id``'s heartbeat; its exit status as documented."""
    task = f"task {args.task_id!r}"
    heartbeat = Heartbeat(
        client,
        args.task_id,
        interval=args.interval,
        lease_timeout=args.lease_timeout,
        fields=args.field,
        stall_timeout=args.stall_timeout,
    )
    command_started = False
    try:
        async with heartbeat as hb:
            _status(f"{task}: running {shlex.join(args.cmd)}")
            command_started = True
            # Its standard error is read only to see its lines, under a stall watchdog.
            watched = args.stall_timeout is not None
            result = await run_command(args.cmd, hb, grace=args.grace, capture_stderr=watched)
    except TaskStopped as stopped:
        if stopped.reason is CancelReason.LEASE_LOST and heartbeat.beats == 0:
            # Never acknowledged: the task was never ours, and the cause is on this side.
            _status(f"{task}: the service never answered the first report: {stopped.detail}")
            return EXIT_OWN_FAILURE
        what = "command stopped" if command_started else "command not started"
        _status(f"{task}: {stopped.reason.value}, {what}: {stopped.detail}")
        return EXIT_STATUS[stopped.reason]
    except OSError as error:
        return _cannot_start(args.cmd[0], error)
    except anyio.get_cancelled_exc_class():
        if command_started:
            _status(f"{task}: interrupted, command stopped")
        raise
    _status(f"{task}: command exited with status {result.status}")
    return result.status


def _cannot_start(command: str, error: OSError) -> int:
    _status(f"cannot run {command!r}: {error.strerror or error}")
    if isinstance(error, FileNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, PermissionError):
        return EXIT_NOT_EXECUTABLE
    return EXIT_OWN_FAILURE


async def _worker(args: argparse.Namespace) -> int:
    if args.metrics_socket is None:
        return await _run_worker(args, None)
    from .instrumentation import get_hooks, set_hooks  # noqa: PLC0415
    from .metrics.prometheus import PrometheusMetrics, serve  # noqa: PLC0415 - an extra's

    metrics = PrometheusMetrics()
    set_hooks([*get_hooks(), metrics])
    # Served from this event loop: the port closes as the worker ends, however it ends,
    # and scrapes still answer while running tasks get their --shutdown-grace.
    async with serve(sock=args.metrics_socket) as url:
        _status(f"metrics at {url}")
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
    async with _client(args, pool=max(DEFAULT_POOL, args.concurrency + 2)) as client:
        runner = TaskRunner(
            client,
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
                _status("stopping: no new tasks; running ones get --shutdown-grace")
                runner.stop()

            def abort(signum: int) -> None:
                nonlocal cut_short
                cut_short = True
                _status("stopping now")
                tg.cancel_scope.cancel()

            tg.start_soon(_on_signals, stop, abort)
            status = 0
            try:
                await runner.run()
            except HeartbeatError:  # the runner has logged why
                status = EXIT_OWN_FAILURE
            tg.cancel_scope.cancel()
    # A shutdown that let every task finish and be reported is a clean exit.
    if interrupted and cut_short:
        return 128 + interrupted[0]
    return EXIT_UNREPORTED if status == 0 and unreported else status


def _status(line: str) -> None:
    print(f"asyncheartbeat: {line}", file=sys.stderr, flush=True)


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("asyncheartbeat: %(message)s"))
    logger = logging.getLogger("asyncheartbeat")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _log_to_files(directory: str) -> None:
    """Log to ``directory``/`LOG_FILE` too, starting a new file every hour, as the Java Task
    Runner's ``--output`` does."""
    os.makedirs(directory, exist_ok=True)
    handler = logging.handlers.TimedRotatingFileHandler(
        os.path.join(directory, LOG_FILE), when="h", backupCount=LOG_BACKUPS, utc=True
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("asyncheartbeat").addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "emulator":
        return _emulator.main(args)
    if args.cmd[:1] == ["--"]:
        args.cmd = args.cmd[1:]
    from_tasks = getattr(args, "run_task_command", False)
    if from_tasks and args.cmd:
        args.usage.error("--run-task-command runs each task's own command: give no CMD")
    if not (args.cmd or from_tasks):
        args.usage.error(f"{args.command} needs a command to run: ... -- CMD [ARGS...]")
    args.metrics_socket = None
    try:
        _check_options(args)
    except (TypeError, ValueError) as problem:
        args.usage.error(str(problem))
    _log_to_stderr()
    if getattr(args, "log_dir", None):
        try:
            _log_to_files(args.log_dir)
        except OSError as error:
            args.usage.error(f"--log-dir {args.log_dir!r}: {error.strerror or error}")
    try:
        status: int = anyio.run(_run if args.command == "run" else _worker, args)
    except Exception as error:  # no region, no credentials …
        _status(f"failed: {_one_line(error)}")
        return EXIT_OWN_FAILURE
    finally:
        if args.metrics_socket is not None:
            args.metrics_socket.close()
    return status


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port`` (IPv6 if ``host`` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


#: What the library's timing check calls each value: the option that gave it.
_TIMING_NAMES = {
    name: "--" + name.replace("_", "-") for name in ("interval", "lease_timeout", "stall_timeout")
}


def _check_options(args: argparse.Namespace) -> None:
    """Refuse, naming the option, what parses but cannot work."""
    Timing.check(args.interval, args.lease_timeout, None, args.stall_timeout, names=_TIMING_NAMES)
    if args.command == "run":
        check_member("ReportTaskProgressInput", "taskId", args.task_id, name="--task-id")
    elif not args.worker_group:
        raise ValueError("--worker-group must not be empty: PollForTask matches it exactly")
    else:
        check_member("PollForTaskInput", "workerGroup", args.worker_group, name="--worker-group")
        _check_metrics_options(args)


def _check_metrics_options(args: argparse.Namespace) -> None:
    if args.metrics_port is None:
        if args.metrics_host is not None:
            raise ValueError("--metrics-host needs --metrics-port")
        return
    try:
        import asyncheartbeat.metrics.prometheus  # noqa: F401, PLC0415 - an extra's
    except ImportError as missing:
        raise ValueError(f"--metrics-port: {missing}") from None
    # Bound now, before any task is polled: a port in use is refused here, not found out
    # by a worker already running without its metrics.
    host = args.metrics_host or METRICS_HOST
    try:
        args.metrics_socket = _listen(host, args.metrics_port)
    except OSError as error:
        raise ValueError(
            f"--metrics-port {args.metrics_port}: cannot listen on {host}: "
            f"{error.strerror or error}"
        ) from None


def _one_line(error: BaseException) -> str:
    """``error`` as one readable line: the one error inside a group, its type and message."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return one_line(f"{type(error).__name__}: {error}")
