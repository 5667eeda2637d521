"""The command line (also ``python -m asyncheartbeat``): ``run`` a command under a task's
heartbeat, run a ``worker`` that polls for tasks and runs a command for each, or serve a
local Data Pipeline (``emulator``).

- `run` and `worker`: the two commands, each its parser, its check and its body;
- `_options`: the options they share, their check, their client, and the argument types;
- `_metrics`: ``worker --metrics-port``'s socket and serving;
- `_logging`: status lines and the log on standard error, and ``--log-dir``'s files;
- `_signals`: SIGINT and SIGTERM.

``emulator`` is the local Data Pipeline's own (`asyncheartbeat.testing._emulator.command`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Awaitable, Callable, Sequence

import anyio

from asyncheartbeat._command import EXIT_OWN_FAILURE
from asyncheartbeat._log import one_line
from asyncheartbeat.testing._emulator import command as _emulator

from . import run, worker
from ._logging import log_to_files, log_to_stderr, status
from ._options import check_timing
from .run import EXIT_CODES, EXIT_STATUSES, EXIT_USAGE
from .worker import EXIT_UNREPORTED

__all__ = ["EXIT_CODES", "EXIT_STATUSES", "EXIT_UNREPORTED", "EXIT_USAGE", "build_parser", "main"]

_Check = Callable[[argparse.Namespace], None]
_Execute = Callable[[argparse.Namespace], Awaitable[int]]
#: Each command's check of what parses but cannot work, and its body, run under anyio.
_COMMANDS: dict[str, tuple[_Check, _Execute]] = {
    "run": (run.check, run.execute),
    "worker": (worker.check, worker.execute),
}


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
    run.add_parser(commands)
    worker.add_parser(commands)
    _emulator.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "emulator":
        return _emulator.main(args)
    check, execute = _COMMANDS[args.command]
    if args.cmd[:1] == ["--"]:
        args.cmd = args.cmd[1:]
    from_tasks = getattr(args, "run_task_command", False)
    if from_tasks and args.cmd:
        args.usage.error("--run-task-command runs each task's own command: give no CMD")
    if not (args.cmd or from_tasks):
        args.usage.error(f"{args.command} needs a command to run: ... -- CMD [ARGS...]")
    try:
        check_timing(args)
        check(args)
    except (TypeError, ValueError) as problem:
        args.usage.error(str(problem))
    log_to_stderr()
    if getattr(args, "log_dir", None):
        try:
            log_to_files(args.log_dir)
        except OSError as error:
            args.usage.error(f"--log-dir {args.log_dir!r}: {error.strerror or error}")
    try:
        code: int = anyio.run(execute, args)
    except Exception as error:  # no region, no credentials …
        status(f"failed: {_one_line(error)}")
        return EXIT_OWN_FAILURE
    return code


def _one_line(error: BaseException) -> str:
    """``error`` as one readable line: the one error inside a group, its type and message."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return one_line(f"{type(error).__name__}: {error}")
