"""``asyncheartbeat emulator``: serve a local Data Pipeline until interrupted, or ``ctl``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio

from . import ctl
from .options import Options


def add_parser(commands: Any) -> None:
    """Add ``emulator``, its options and ``ctl`` to the top parser's sub-commands.

    Args:
        commands: What ``add_subparsers`` of the top parser returned.
    """
    emulator: argparse.ArgumentParser = commands.add_parser(
        "emulator",
        help="serve a local Data Pipeline until interrupted",
        description="Serve a local Data Pipeline (JSON 1.1 over HTTP) until interrupted. "
        "Prints its URL first. State stays in memory.",
    )
    Options.add_arguments(emulator)
    emulator.add_argument(
        "--stop-when-stdin-closes", action="store_true",
        help="stop when standard input closes, so that the emulator dies with the process "
        "that started it (EmulatorProcess uses this)",
    )  # fmt: skip
    emulator_commands = emulator.add_subparsers(dest="emulator_command", metavar="[ctl]")
    ctl.add_parser(emulator_commands)


def main(args: argparse.Namespace) -> int:
    """Run ``emulator`` or ``emulator ctl`` as ``args`` say; the exit status.

    Args:
        args: The parsed command line.
    """
    if args.emulator_command == "ctl":
        return ctl.run(args)
    if args.log_requests:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("asyncheartbeat emulator: %(message)s"))
        logger = logging.getLogger("asyncheartbeat.emulator")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        anyio.run(_serve, args)
    except OSError as error:  # the port is taken, the address is not ours …
        print(f"asyncheartbeat: cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return 0


async def _serve(args: argparse.Namespace) -> None:
    from .front import LocalDataPipeline  # noqa: PLC0415 - aiohttp only here

    async def stop_on(signals: AsyncIterator[int], stop: anyio.CancelScope) -> None:
        async for _ in signals:
            break
        stop.cancel()

    async def stop_when_stdin_closes(stop: anyio.CancelScope) -> None:
        # Whoever holds the other end of our standard input started us: when it closes
        # (it exited, or was killed), we go too, instead of being left to init.
        fd = sys.stdin.fileno()
        while True:
            await anyio.wait_readable(fd)
            if not os.read(fd, 4096):
                break
        stop.cancel()

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with LocalDataPipeline(**Options.from_args(args).keywords()) as dp:
            # The URL alone on the first line, for scripts: url=$(asyncheartbeat emulator | head -1)
            print(dp.url, flush=True)
            if not args.stop_when_stdin_closes:  # a person at a terminal, not EmulatorProcess
                print("local Data Pipeline serving; Ctrl-C stops it", file=sys.stderr, flush=True)
            async with anyio.create_task_group() as tg:
                tg.start_soon(stop_on, signals, tg.cancel_scope)
                if args.stop_when_stdin_closes:
                    tg.start_soon(stop_when_stdin_closes, tg.cancel_scope)
