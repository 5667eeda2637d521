"""The options ``run`` and ``worker`` share (AWS and heartbeat timing), with their check and
the client they make; and the command line's own argument types (the ones the emulator
shares are in `asyncheartbeat._arguments`)."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from asyncheartbeat._arguments import number, positive_seconds, seconds_or_zero
from asyncheartbeat._fields import check_field
from asyncheartbeat._reporter._admission import DEFAULT_POOL
from asyncheartbeat._runner import TaskRunner
from asyncheartbeat._timing import DEFAULT_INTERVAL, DEFAULT_LEASE_TIMEOUT, Timing

#: What the library's timing check calls each value: the option that gave it.
_TIMING_NAMES = {
    name: "--" + name.replace("_", "-") for name in ("interval", "lease_timeout", "stall_timeout")
}


def exit_status(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 255:
        raise argparse.ArgumentTypeError(f"{text!r} is not an exit status from 1 to 255")
    return int(text)


def count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def field(text: str) -> dict[str, str]:
    key, equals, value = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    try:
        check_field(key, "stringValue", value)
    except ValueError as problem:
        raise argparse.ArgumentTypeError(str(problem)) from None
    return {"key": key, "stringValue": value}


def add_common(command: argparse.ArgumentParser) -> None:
    """AWS settings and heartbeat timing, shared by run and worker; and the sub-command's
    own parser, so that a usage error shows the sub-command's usage."""
    command.set_defaults(usage=command)
    aws = command.add_argument_group("AWS (credentials and profile come from the environment)")
    aws.add_argument("--region", help="AWS region (default: from the environment or profile)")
    aws.add_argument("--endpoint-url", help="another endpoint, such as a local Data Pipeline")
    timing = command.add_argument_group("heartbeat")
    timing.add_argument(
        "--interval", type=positive_seconds, default=DEFAULT_INTERVAL, metavar="SECONDS",
        help=f"seconds between progress reports (default: {DEFAULT_INTERVAL:g})",
    )  # fmt: skip
    timing.add_argument(
        "--lease-timeout", type=positive_seconds, default=DEFAULT_LEASE_TIMEOUT,
        metavar="SECONDS",
        help="stop the command after this long without an answered report "
        f"(default: {DEFAULT_LEASE_TIMEOUT:g})",
    )  # fmt: skip
    timing.add_argument(
        "--stall-timeout", type=number, metavar="SECONDS",
        help="stop CMD when it has printed no line (on standard output or error) for this "
        "long: a stall (run exits with 120; worker reports the task FAILED, errorId "
        "TaskStalled); default: never",
    )  # fmt: skip
    timing.add_argument(
        "--grace", type=seconds_or_zero, default=10.0, metavar="SECONDS",
        help="after SIGTERM, wait this long before SIGKILL (default: 10); if the worker "
        "dies, no later than the task's lease ends",
    )  # fmt: skip
    command.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")


def check_timing(args: argparse.Namespace) -> None:
    """Refuse, naming the option, timing that parses but cannot keep a lease."""
    Timing.check(args.interval, args.lease_timeout, None, args.stall_timeout, names=_TIMING_NAMES)


@asynccontextmanager
async def client(args: argparse.Namespace, *, pool: int = DEFAULT_POOL) -> AsyncIterator[Any]:
    """A Data Pipeline client as the AWS options say, with ``pool`` connections."""
    from aiobotocore.session import get_session  # noqa: PLC0415 - only where a client is made

    async with get_session().create_client(
        "datapipeline",
        region_name=args.region,
        endpoint_url=args.endpoint_url,
        config=TaskRunner.client_config(max_pool_connections=pool),
    ) as made:
        yield made
