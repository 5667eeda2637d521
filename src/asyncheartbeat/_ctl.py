"""``asyncheartbeat emulator ctl``: the local Data Pipeline's moves, from a shell.

Each sub-command is one POST to the emulator's control endpoint (``/_emulator/<move>``,
JSON in and out), the same moves `EmulatorProcess` makes from Python.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

#: Where the emulator is, when ``--url`` is not given: botocore's own variables, so that one
#: ``export`` points the AWS CLI, boto3, aiobotocore and ``ctl`` at the same endpoint.
URL_VARIABLES = ("AWS_ENDPOINT_URL_DATA_PIPELINE", "AWS_ENDPOINT_URL")
#: How long one control call may take.
TIMEOUT = 30.0
#: ``fault``'s kinds, and the argument each takes.
FAULT_ARGUMENTS = {
    "error": "CODE",
    "delay": "SECONDS",
    "hang": None,
    "drop": None,
    "malformed": None,
    "answer": "JSON",
}


def add_parser(emulator_commands: Any) -> None:
    """Add ``ctl`` and its sub-commands to the ``emulator`` command's sub-parsers.

    Args:
        emulator_commands: What ``add_subparsers`` of the ``emulator`` parser returned.
    """
    ctl = emulator_commands.add_parser(
        "ctl",
        help="act on a running local Data Pipeline: cancel, delete, add tasks, inject faults",
        description="Act on a running local Data Pipeline through its control endpoint. "
        f"--url defaults to ${URL_VARIABLES[0]}, else ${URL_VARIABLES[1]}.",
    )
    ctl.set_defaults(usage=ctl)
    ctl.add_argument("--url", help="the emulator's URL, as it printed it")
    moves = ctl.add_subparsers(dest="move", required=True, metavar="MOVE")

    def move(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = moves.add_parser(
            name, help=help_text, description=help_text
        )
        parser.set_defaults(usage=parser)
        return parser

    def task_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--worker-group", help="its worker group (default: asyncheartbeat)")
        parser.add_argument(
            "--report-progress-timeout", metavar="DURATION",
            help="the activity's reportProgressTimeout, such as '10 minutes'",
        )  # fmt: skip
        parser.add_argument(
            "--maximum-retries", type=_whole, metavar="N", help="the activity's maximumRetries"
        )

    add_task = move(
        "add-task", "make a one-activity pipeline and hand its task out, as PollForTask "
        "would; print the task id",
    )  # fmt: skip
    add_task.add_argument("--task-id", help="the task id to hand out (default: a new one)")
    task_options(add_task)
    add_pipeline = move(
        "add-pipeline", "make and activate a one-activity pipeline whose task waits for the "
        "next poller; print the pipeline id",
    )  # fmt: skip
    add_pipeline.add_argument(
        "--command", dest="activity_command", help="its ShellCommandActivity's command"
    )
    add_pipeline.add_argument(
        "--field", action="append", type=_field, default=[], metavar="KEY=VALUE",
        help="another field of the activity, such as scriptArgument=2026-11-22 (repeatable)",
    )  # fmt: skip
    task_options(add_pipeline)
    move("cancel", "cancel a task (its next report answers canceled: true)").add_argument(
        "task_id", metavar="TASK_ID"
    )
    move("forget", "take a task back, as a reassignment does (TaskNotFoundException)").add_argument(
        "task_id", metavar="TASK_ID"
    )
    move(
        "delete", "delete a pipeline (its tasks' reports get PipelineDeletedException)"
    ).add_argument("pipeline_id", metavar="PIPELINE_ID")
    terminate = move("terminate", "make ReportTaskRunnerHeartbeat answer terminate: true")
    terminate.add_argument("--taskrunner-id", metavar="ID", help="only for this runner")
    terminate.add_argument("--off", action="store_true", help="answer terminate: false again")
    fault = move(
        "fault", "meet matching calls with a fault: error CODE, delay SECONDS, hang, drop, "
        "malformed, answer JSON",
    )  # fmt: skip
    fault.add_argument("kind", choices=sorted(FAULT_ARGUMENTS), metavar="KIND")
    fault.add_argument("argument", nargs="?", metavar="ARG", help="CODE, SECONDS or JSON")
    fault.add_argument("--status", type=_whole, help="an error's HTTP status (4xx or 5xx)")
    fault.add_argument("--message", default="", help="an error's message")
    fault.add_argument(
        "--operation", default="ReportTaskProgress",
        help="the operation it meets, or 'any' (default: ReportTaskProgress)",
    )  # fmt: skip
    fault.add_argument("--task-id", help="only calls for this task")
    fault.add_argument("--pipeline-id", help="only calls for this pipeline's tasks")
    count = fault.add_mutually_exclusive_group()
    count.add_argument("--times", type=_whole, default=1, help="for the next N calls (default: 1)")
    count.add_argument("--always", action="store_true", help="for every matching call")
    fault.add_argument(
        "--probability", type=float, default=1.0, metavar="P",
        help="each matching call meets it with probability P (drawn from --seed)",
    )  # fmt: skip
    move("clear-faults", "remove every injected fault")
    move("attempt", "print a task's attempt as DescribeObjects shows it (JSON)").add_argument(
        "task_id", metavar="TASK_ID"
    )
    move("calls", "print every call received, one JSON object a line")


def run(args: argparse.Namespace) -> int:
    """Make the move ``args`` name; print its result. Return the exit status.

    Args:
        args: The parsed command line of ``asyncheartbeat emulator ctl``.
    """
    usage: argparse.ArgumentParser = args.usage
    url: str | None = args.url or next(
        (os.environ[v] for v in URL_VARIABLES if os.environ.get(v)), None
    )
    if not url:
        usage.error(
            f"no emulator URL: give --url, or set ${URL_VARIABLES[0]} or ${URL_VARIABLES[1]}"
        )
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        usage.error(f"--url {url!r} is not an http:// URL (the emulator prints its own)")
    try:
        command, body = _request(args)
    except (ValueError, TypeError) as problem:
        usage.error(str(problem))
    try:
        result = _post(url, command, body)
    except ControlError as error:
        print(f"asyncheartbeat: {error}", file=sys.stderr)
        return 1
    try:
        if args.move == "calls":
            for call in result:
                print(json.dumps(call))
        elif args.move == "attempt":
            print(json.dumps(result, indent=2))
        elif result is not None:
            print(result)
        sys.stdout.flush()
    except BrokenPipeError:  # `ctl calls | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


class ControlError(Exception):
    """The emulator could not be reached, or refused the move."""


#: Moves that name one object: (control command, the argument that names it).
ONE_OBJECT = {
    "cancel": ("cancel_task", "task_id"),
    "forget": ("forget_task", "task_id"),
    "delete": ("delete_pipeline", "pipeline_id"),
    "attempt": ("attempt", "task_id"),
}


def _request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The control command and its JSON arguments for the move in ``args``."""
    if args.move in ONE_OBJECT:
        command, name = ONE_OBJECT[args.move]
        return command, {name: getattr(args, name)}
    options = {
        "task_id": getattr(args, "task_id", None),
        "worker_group": getattr(args, "worker_group", None),
        "command": getattr(args, "activity_command", None),
        "report_progress_timeout": getattr(args, "report_progress_timeout", None),
        "maximum_retries": getattr(args, "maximum_retries", None),
    }
    options = {key: value for key, value in options.items() if value is not None}
    match args.move:
        case "add-task":
            request = "add_task", options
        case "add-pipeline":
            request = "add_pipeline", options | {"fields": args.field}
        case "terminate":
            request = (
                "set_terminate",
                {"terminate": not args.off, "taskrunner_id": args.taskrunner_id},
            )
        case "fault":
            request = "inject", _fault_request(args)
        case "clear-faults":
            request = "clear_faults", {}
        case _:
            request = "calls", {}
    return request


def _fault_request(args: argparse.Namespace) -> dict[str, Any]:
    from .testing._faults import Fault  # noqa: PLC0415 - only for this move
    from .testing._limits import check_operations  # noqa: PLC0415

    wanted = FAULT_ARGUMENTS[args.kind]
    if wanted is None and args.argument is not None:
        raise ValueError(f"{_a(args.kind)} fault takes no argument, got {args.argument!r}")
    if wanted is not None and args.argument is None:
        raise ValueError(f"{_a(args.kind)} fault needs its {wanted}: fault {args.kind} {wanted}")
    if args.kind != "error" and (args.status is not None or args.message):
        raise ValueError("--status and --message are for an error fault")
    match args.kind:
        case "error":
            fault = Fault.error(args.argument, status=args.status, message=args.message)
        case "delay":
            try:
                seconds = float(args.argument)
            except ValueError:
                raise ValueError(f"{args.argument!r} is not a number of seconds") from None
            fault = Fault.delay(seconds)
        case "answer":
            try:
                body = json.loads(args.argument)
            except ValueError as error:
                raise ValueError(f"{args.argument!r} is not JSON: {error}") from None
            fault = Fault.answer(body)
        case _:
            fault = getattr(Fault, args.kind)()
    operation = None if args.operation == "any" else args.operation
    if operation is not None:
        check_operations([operation])
    if not 0 < args.probability <= 1:
        raise ValueError(f"--probability must be more than 0 and at most 1, not {args.probability}")
    return {
        "fault": fault.to_json(),
        "operation": operation,
        "task_id": args.task_id,
        "pipeline_id": args.pipeline_id,
        "times": None if args.always else args.times,
        "probability": args.probability,
    }


def _post(url: str, command: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"{url.rstrip('/')}/_emulator/{command}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.load(response)["result"]
    except urllib.error.HTTPError as error:
        try:
            message = json.load(error)["error"]
        except (ValueError, KeyError):
            message = f"HTTP {error.code} {error.reason}"
        raise ControlError(f"the emulator refused {command}: {message}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ControlError(f"cannot reach an emulator at {url}: {reason}") from None


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _whole(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def _field(text: str) -> dict[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return {"key": key, "stringValue": value}
