"""The local Data Pipeline in a process of its own, so that client and server use two cores."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from .control import post, remote
from .moves import Moves, every_call
from .options import Configured, Options
from .recording import Call, reports_of

#: How long the process may take to start serving.
START_TIMEOUT = 30.0
#: How long it may take to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
#: The longest one control call waits for new calls, before it asks again.
LONG_POLL = 10.0


def _calls(result: Any) -> list[Call]:
    return [Call(**call) for call in result]


def _attempt(result: Any) -> dict[str, Any]:
    attempt: dict[str, Any] = result
    return attempt


class EmulatorProcess(Configured):
    """``async with EmulatorProcess() as dp``: `LocalDataPipeline` in another process.

    It runs ``python -m asyncheartbeat emulator`` and offers the same moves and queries,
    awaited, over the emulator's control endpoint, on asyncio and trio alike. The child
    stops when this process does, even when this one is killed: it stops when its standard
    input, whose other end only this process holds, closes. Use it for benchmarks and soak
    runs, and on trio.

    Args:
        host: As for `LocalDataPipeline`.
        port: As for `LocalDataPipeline`.
        ack_timeout: As for `LocalDataPipeline`.
        report_timeout: As for `LocalDataPipeline`.
        poll_timeout: As for `LocalDataPipeline`.
        seed: As for `LocalDataPipeline`.
        record_calls: As for `LocalDataPipeline`.
        rate_limits: As for `LocalDataPipeline`.
        log_requests: As for `LocalDataPipeline`: the child's lines go to this process's
            standard error.

    Raises:
        ValueError: As for `LocalDataPipeline`, here rather than in the child.
    """

    def _configure(self, options: Options) -> None:
        # Bad values were refused by Options, here, not discovered in the child's stderr.
        self._command = [
            sys.executable, "-m", "asyncheartbeat", "emulator", *options.argv(),
            "--stop-when-stdin-closes",
        ]  # fmt: skip
        self._process: anyio.abc.Process | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The endpoint URL, for ``endpoint_url=``."""
        if self._url is None:
            raise RuntimeError("the emulator process is not running: use `async with`")
        return self._url

    @property
    def pid(self) -> int:
        """The child's process id."""
        if self._process is None:
            raise RuntimeError("the emulator process is not running: use `async with`")
        return self._process.pid

    async def __aenter__(self) -> EmulatorProcess:
        self._process = await anyio.open_process(self._command, stdin=subprocess.PIPE, stderr=None)
        try:
            with anyio.fail_after(START_TIMEOUT):
                self._url = await self._read_url()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop()

    async def _read_url(self) -> str:
        assert self._process is not None
        assert self._process.stdout is not None
        received = b""
        while b"\n" not in received:
            try:
                received += await self._process.stdout.receive()
            except anyio.EndOfStream:
                raise RuntimeError(
                    f"the emulator process ended before serving (exit {await self._process.wait()})"
                ) from None
        return received.split(b"\n", 1)[0].decode().strip()

    async def _stop(self) -> None:
        process, self._process, self._url = self._process, None, None
        if process is None or process.returncode is not None:
            return
        if process.stdin is not None:
            await process.stdin.aclose()  # the child stops when it sees that
        process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(STOP_TIMEOUT, shield=True):
            await process.wait()
            return
        process.kill()
        await process.wait()

    # The moves of LocalDataPipeline, awaited: each made by the table's row.
    add_task = remote(Moves.add_task)
    add_pipeline = remote(Moves.add_pipeline)
    cancel_task = remote(Moves.cancel_task)
    forget_task = remote(Moves.forget_task)
    delete_pipeline = remote(Moves.delete_pipeline)
    set_terminate = remote(Moves.set_terminate)
    inject = remote(Moves.inject)
    clear_faults = remote(Moves.clear_faults)
    #: The attempt object as DescribeObjects shows it, with the ``pipelineId`` it belongs to.
    attempt = remote(Moves.attempt, _attempt)
    #: Every call received so far (the anyio times are the other process's clock).
    calls = remote(every_call, _calls)

    async def reports(self, task_id: str) -> list[Call]:
        """As for `LocalDataPipeline.reports`, awaited.

        Args:
            task_id: The task.
        """
        return reports_of(task_id, await self.calls())

    async def wait_for_calls(self, predicate: Callable[[list[Call]], bool]) -> list[Call]:
        """Wait until ``predicate(calls)`` holds; guard it with a timeout of your own.

        Args:
            predicate: Called with the calls so far, each time more arrive.

        Returns:
            The calls, once it holds.
        """
        while not predicate(calls := await self.calls()):
            await post(self.url, "wait_for_calls", {"after": len(calls), "longest": LONG_POLL})
        return calls

    async def wait_for_reports(self, task_id: str, count: int) -> list[Call]:
        """As for `LocalDataPipeline.wait_for_reports`, awaited.

        Args:
            task_id: The task.
            count: How many reports to wait for.
        """
        calls = await self.wait_for_calls(lambda calls: len(reports_of(task_id, calls)) >= count)
        return reports_of(task_id, calls)
