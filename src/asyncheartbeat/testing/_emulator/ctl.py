"""``asyncheartbeat emulator ctl``: the moves of the table, from a shell.

Each sub-command is one row of `MOVES`, one POST to the emulator's control endpoint; its
help and its parameters' help come from the row. A few parameters take a shape of their
own on the command line (`SHAPES`); the others follow from their types: one that must be
given is an argument, one with a default an ``--option``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Callable
from typing import Any

import anyio

from asyncheartbeat.testing._faults import Fault
from asyncheartbeat.testing._limits import check_operations

from .control import MoveRefused, post
from .moves import MOVES, Move, Parameter

#: Where the emulator is, when ``--url`` is not given: botocore's own variables, so that one
#: ``export`` points the AWS CLI, boto3, aiobotocore and ``ctl`` at the same endpoint.
URL_VARIABLES = ("AWS_ENDPOINT_URL_DATA_PIPELINE", "AWS_ENDPOINT_URL")
#: How long one control call may take.
TIMEOUT = 30.0
#: ``fault``'s kinds, and the argument each takes; each is a `Fault` class method.
FAULT_ARGUMENTS = {
    "error": "CODE",
    "delay": "SECONDS",
    "hang": None,
    "drop": None,
    "malformed": None,
    "answer": "JSON",
    "expired-token": None,
    "invalid-signature": None,
}
#: Metavars other than the parameter's name in capitals.
METAVARS = {
    "report_progress_timeout": "DURATION",
    "maximum_retries": "N",
    "taskrunner_id": "ID",
    "probability": "P",
    "every": "N",
}


class ControlError(Exception):
    """The emulator could not be reached, or refused the move."""


def _whole(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(text)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _field(text: str) -> dict[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return {"key": key, "stringValue": value}


def _dest(parameter: Parameter) -> str:
    # Apart from the top parser's own names (``command`` is the sub-command's).
    return f"move_{parameter.name}"


def _flag(parameter: Parameter) -> str:
    return "--" + parameter.name.replace("_", "-")


def _help(parameter: Parameter) -> str:
    text = parameter.help.replace("``", "").replace("`", "")
    if isinstance(parameter.default, str):
        text += f" (default: {parameter.default})"
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class Shape:
    """A parameter's own way onto the command line: its arguments, and the value they give
    (`NOT_GIVEN` to leave the move's default)."""

    add: Callable[[argparse.ArgumentParser, Parameter], None]
    value: Callable[[argparse.Namespace, Parameter], Any]


NOT_GIVEN = object()


def _add_plain(parser: argparse.ArgumentParser, parameter: Parameter) -> None:
    kinds = set(typing.get_args(parameter.type)) - {type(None)} or {parameter.type}
    parse = _whole if int in kinds else _number if float in kinds else str
    if parameter.required:
        parser.add_argument(
            _dest(parameter), type=parse, metavar=parameter.name.upper(), help=_help(parameter)
        )
    else:
        parser.add_argument(
            _flag(parameter), dest=_dest(parameter), type=parse, default=NOT_GIVEN,
            metavar=METAVARS.get(parameter.name, parameter.name.upper()), help=_help(parameter),
        )  # fmt: skip


def _plain(args: argparse.Namespace, parameter: Parameter) -> Any:
    return getattr(args, _dest(parameter))


def _add_switch_off(parser: argparse.ArgumentParser, parameter: Parameter) -> None:
    parser.add_argument("--off", dest=_dest(parameter), action="store_false", help=_help(parameter))


def _add_fields(parser: argparse.ArgumentParser, parameter: Parameter) -> None:
    parser.add_argument(
        "--field", dest=_dest(parameter), action="append", type=_field, default=[],
        metavar="KEY=VALUE", help=f"{_help(parameter)} (repeatable, KEY=VALUE)",
    )  # fmt: skip


def _add_operation(parser: argparse.ArgumentParser, parameter: Parameter) -> None:
    parser.add_argument(
        "--operation", dest=_dest(parameter), default=parameter.default, metavar="OP",
        help=f"{_help(parameter)} ('any' for None)",
    )  # fmt: skip


def _operation(args: argparse.Namespace, parameter: Parameter) -> Any:
    operation = getattr(args, _dest(parameter))
    if operation == "any":
        return None
    check_operations([operation])
    return operation


def _add_times(parser: argparse.ArgumentParser, parameter: Parameter) -> None:
    count = parser.add_mutually_exclusive_group()
    count.add_argument(
        "--times", dest=_dest(parameter), type=_whole, default=parameter.default,
        metavar="N", help=f"{_help(parameter)} (default: {parameter.default})",
    )  # fmt: skip
    count.add_argument(
        "--always", dest=_dest(parameter), action="store_const", const=None, help="--times None"
    )


def _add_fault(parser: argparse.ArgumentParser, parameter: Parameter) -> None:
    kinds = ", ".join(f"{k} {v}" if v else k for k, v in FAULT_ARGUMENTS.items())
    parser.add_argument(
        "fault_kind", choices=list(FAULT_ARGUMENTS), metavar="KIND",
        help=f"{_help(parameter).rstrip('.')}: {kinds}",
    )  # fmt: skip
    parser.add_argument("fault_argument", nargs="?", metavar="ARG", help="CODE, SECONDS or JSON")
    parser.add_argument("--status", type=_whole, help="an error's HTTP status (4xx or 5xx)")
    parser.add_argument("--message", default="", help="an error's message")


def _fault(args: argparse.Namespace, parameter: Parameter) -> Fault:
    kind, argument = args.fault_kind, args.fault_argument
    wanted = FAULT_ARGUMENTS[kind]
    article = "an" if kind[0] in "aeiou" else "a"
    if wanted is None and argument is not None:
        raise ValueError(f"{article} {kind} fault takes no argument, got {argument!r}")
    if wanted is not None and argument is None:
        raise ValueError(f"{article} {kind} fault needs its {wanted}: fault {kind} {wanted}")
    if kind != "error" and (args.status is not None or args.message):
        raise ValueError("--status and --message are for an error fault")
    match kind:
        case "error":
            return Fault.error(argument, status=args.status, message=args.message)
        case "delay":
            try:
                seconds = float(argument)
            except ValueError:
                raise ValueError(f"{argument!r} is not a number of seconds") from None
            return Fault.delay(seconds)
        case "answer":
            try:
                body = json.loads(argument)
            except ValueError as error:
                raise ValueError(f"{argument!r} is not JSON: {error}") from None
            return Fault.answer(body)
    made: Fault = getattr(Fault, kind.replace("-", "_"))()
    return made


def _probability(args: argparse.Namespace, parameter: Parameter) -> Any:
    probability = getattr(args, _dest(parameter))
    if probability is not NOT_GIVEN and not 0 < probability <= 1:
        raise ValueError(f"--probability must be more than 0 and at most 1, not {probability}")
    return probability


#: The parameters whose command line is not the plain one.
SHAPES: dict[str, Shape] = {
    "fault": Shape(_add_fault, _fault),
    "fields": Shape(_add_fields, _plain),
    "operation": Shape(_add_operation, _operation),
    "probability": Shape(_add_plain, _probability),
    "terminate": Shape(_add_switch_off, _plain),
    "times": Shape(_add_times, _plain),
}
_PLAIN = Shape(_add_plain, _plain)


def add_parser(emulator_commands: Any) -> None:
    """Add ``ctl`` and a sub-command per move to the ``emulator`` command's sub-parsers.

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
    commands = ctl.add_subparsers(dest="move", required=True, metavar="MOVE")
    for move in MOVES.values():
        text = move.help.replace("``", "").replace("`", "")
        parser = commands.add_parser(move.command, help=text, description=text)
        parser.set_defaults(usage=parser, move=move)
        for parameter in move.parameters:
            SHAPES.get(parameter.name, _PLAIN).add(parser, parameter)


def _arguments(move: Move, args: argparse.Namespace) -> dict[str, Any]:
    """The move's JSON arguments from the command line; those not given are left out."""
    arguments = {}
    for parameter in move.parameters:
        value = SHAPES.get(parameter.name, _PLAIN).value(args, parameter)
        if value is not NOT_GIVEN:
            arguments[parameter.name] = value
    return arguments


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
    if not url.startswith(("http://", "https://")):
        usage.error(f"--url {url!r} is not an http:// URL (the emulator prints its own)")
    move: Move = args.move
    try:
        arguments = _arguments(move, args)
    except (ValueError, TypeError) as problem:
        usage.error(str(problem))
    try:
        result = anyio.run(_make, url, move.name, arguments)
    except ControlError as error:
        print(f"asyncheartbeat: {error}", file=sys.stderr)
        return 1
    try:
        if isinstance(result, list):
            for item in result:
                print(json.dumps(item))
        elif isinstance(result, dict):
            print(json.dumps(result, indent=2))
        elif result is not None:
            print(result)
        sys.stdout.flush()
    except BrokenPipeError:  # `ctl calls | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


async def _make(url: str, move: str, arguments: dict[str, Any]) -> Any:
    try:
        with anyio.fail_after(TIMEOUT):
            return await post(url, move, arguments)
    except MoveRefused as refused:
        raise ControlError(str(refused)) from None
    except (OSError, TimeoutError, ValueError) as error:
        raise ControlError(f"cannot reach an emulator at {url}: {error}") from None
