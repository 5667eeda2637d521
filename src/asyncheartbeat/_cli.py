"""The command line: ``asyncheartbeat emulator`` (also ``python -m asyncheartbeat``)."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

import anyio


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 picks a free one)")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asyncheartbeat", description="Keep AWS Data Pipeline tasks alive; test them locally."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    emulator = commands.add_parser(
        "emulator",
        help="serve a local Data Pipeline until interrupted",
        description="Serve a local Data Pipeline (JSON 1.1 over HTTP) until interrupted. "
        "Prints its URL first. State stays in memory.",
    )
    emulator.add_argument("--host", default="127.0.0.1", help="address to listen on")
    emulator.add_argument("--port", type=_port, default=0, help="port (default: a free one)")
    emulator.add_argument(
        "--ack-timeout", type=_positive_seconds, default=120.0, metavar="SECONDS",
        help="hand a task out again if not acknowledged within this (default: 120)",
    )  # fmt: skip
    emulator.add_argument(
        "--report-timeout", type=_positive_seconds, default=300.0, metavar="SECONDS",
        help="make a new attempt of a task not reported on for this long (default: 300)",
    )  # fmt: skip
    emulator.add_argument(
        "--poll-timeout", type=_positive_seconds, default=90.0, metavar="SECONDS",
        help="longest PollForTask wait (default: 90)",
    )  # fmt: skip
    emulator.add_argument("--seed", type=int, help="seed for faults injected by probability")
    emulator.add_argument(
        "--no-record-calls", action="store_true",
        help="do not keep every call in memory (for long load runs)",
    )  # fmt: skip
    return parser


async def _serve_emulator(args: argparse.Namespace) -> None:
    from asyncheartbeat.testing import LocalDataPipeline  # noqa: PLC0415 - aiohttp only here

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with LocalDataPipeline(
            host=args.host,
            port=args.port,
            ack_timeout=args.ack_timeout,
            report_timeout=args.report_timeout,
            poll_timeout=args.poll_timeout,
            seed=args.seed,
            record_calls=not args.no_record_calls,
        ) as dp:
            # The URL alone on the first line, for scripts: url=$(asyncheartbeat emulator | head -1)
            print(dp.url, flush=True)
            print("local Data Pipeline serving; Ctrl-C stops it", file=sys.stderr, flush=True)
            async for _ in signals:
                break


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        anyio.run(_serve_emulator, args)
    except OSError as error:  # the port is taken, the address is not ours …
        print(f"asyncheartbeat: cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return 0
