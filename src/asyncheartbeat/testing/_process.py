"""The local Data Pipeline in a process of its own, so that client and server use two cores."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc

from ._faults import Fault
from ._limits import RateLimits, resolve_rate_limits
from ._server import CONTROL_PREFIX, DEFAULT_WORKER_GROUP, Call
from ._service import Timeouts

#: How long the process may take to start serving.
START_TIMEOUT = 30.0
#: How long it may take to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0
#: The longest one control call waits for new calls, before it asks again.
LONG_POLL = 10.0


class EmulatorProcess:
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

    Raises:
        ValueError: As for `LocalDataPipeline`, here rather than in the child.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ack_timeout: float = Timeouts.ack,
        report_timeout: float = Timeouts.report,
        poll_timeout: float = Timeouts.poll,
        seed: int | None = None,
        record_calls: bool = True,
        rate_limits: RateLimits = None,
    ) -> None:
        # Bad values are refused here, not discovered in the child's stderr.
        Timeouts(ack_timeout, report_timeout, poll_timeout)
        limits = resolve_rate_limits(rate_limits)
        self._command = [
            sys.executable, "-m", "asyncheartbeat", "emulator",
            "--host", host, "--port", str(port),
            "--ack-timeout", str(ack_timeout),
            "--report-timeout", str(report_timeout),
            "--poll-timeout", str(poll_timeout),
            "--stop-when-stdin-closes",
        ]  # fmt: skip
        if seed is not None:
            self._command += ["--seed", str(seed)]
        if not record_calls:
            self._command.append("--no-record-calls")
        if rate_limits is True:
            self._command.append("--rate-limits")
        else:
            for operation, limit in limits.items():
                # repr() of a float reads back as the same float.
                self._command += ["--rate-limit", f"{operation}={limit.rate!r}/{limit.burst}"]
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

    async def _control(self, move: str, /, **args: Any) -> Any:
        """POST one control move and return its result. Plain HTTP/1.1 over an anyio socket,
        so that it works on any backend (aiohttp runs on asyncio only)."""
        address = urllib.parse.urlsplit(self.url)
        assert address.hostname is not None
        assert address.port is not None
        body = json.dumps(args).encode()
        request = (
            f"POST {CONTROL_PREFIX}{move} HTTP/1.1\r\nHost: {address.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n"
        ).encode() + body
        answer = b""
        async with await anyio.connect_tcp(address.hostname, address.port) as stream:
            await stream.send(request)
            async for chunk in stream:  # until the server closes, as asked
                answer += chunk
        head, _, content = answer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 "):
            raise RuntimeError(f"the emulator process answered {move} with {answer[:200]!r}")
        result = json.loads(content)
        if "error" in result:
            raise ValueError(f"emulator refused {move}: {result['error']}")
        return result["result"]

    # The moves of LocalDataPipeline, awaited.

    async def add_task(
        self,
        task_id: str | None = None,
        *,
        worker_group: str = DEFAULT_WORKER_GROUP,
        report_progress_timeout: str | None = None,
        maximum_retries: int | None = None,
    ) -> str:
        """Make a task that a runner holds, as PollForTask would hand it out.

        Args:
            task_id: As for `LocalDataPipeline.add_task`.
            worker_group: As for `LocalDataPipeline.add_task`.
            report_progress_timeout: As for `LocalDataPipeline.add_task`.
            maximum_retries: As for `LocalDataPipeline.add_task`.

        Returns:
            The task id.
        """
        result: str = await self._control(
            "add_task",
            task_id=task_id,
            worker_group=worker_group,
            report_progress_timeout=report_progress_timeout,
            maximum_retries=maximum_retries,
        )
        return result

    async def add_pipeline(
        self,
        *,
        worker_group: str = DEFAULT_WORKER_GROUP,
        command: str = "true",
        report_progress_timeout: str | None = None,
        maximum_retries: int | None = None,
        fields: Sequence[Mapping[str, str]] = (),
    ) -> str:
        """Make and activate a one-activity pipeline whose task is ready.

        Args:
            worker_group: As for `LocalDataPipeline.add_pipeline`.
            command: As for `LocalDataPipeline.add_pipeline`.
            report_progress_timeout: As for `LocalDataPipeline.add_pipeline`.
            maximum_retries: As for `LocalDataPipeline.add_pipeline`.
            fields: As for `LocalDataPipeline.add_pipeline`.

        Returns:
            The pipeline id.
        """
        result: str = await self._control(
            "add_pipeline",
            worker_group=worker_group,
            command=command,
            report_progress_timeout=report_progress_timeout,
            maximum_retries=maximum_retries,
            fields=[dict(field) for field in fields],
        )
        return result

    async def cancel_task(self, task_id: str) -> None:
        """Cancel the task's attempt: its next report answers canceled.

        Args:
            task_id: A task id the emulator handed out.
        """
        await self._control("cancel_task", task_id=task_id)

    async def forget_task(self, task_id: str) -> None:
        """Take the task back as a reassignment does.

        Args:
            task_id: A task id the emulator handed out.
        """
        await self._control("forget_task", task_id=task_id)

    async def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete a pipeline.

        Args:
            pipeline_id: The pipeline.
        """
        await self._control("delete_pipeline", pipeline_id=pipeline_id)

    async def set_terminate(
        self, terminate: bool = True, *, taskrunner_id: str | None = None
    ) -> None:
        """Say what ReportTaskRunnerHeartbeat answers.

        Args:
            terminate: As for `LocalDataPipeline.set_terminate`.
            taskrunner_id: As for `LocalDataPipeline.set_terminate`.
        """
        await self._control("set_terminate", terminate=terminate, taskrunner_id=taskrunner_id)

    async def inject(
        self,
        fault: Fault,
        *,
        operation: str | None = "ReportTaskProgress",
        task_id: str | None = None,
        pipeline_id: str | None = None,
        times: int | None = 1,
        probability: float = 1.0,
    ) -> None:
        """Meet matching calls with ``fault``.

        Args:
            fault: As for `LocalDataPipeline.inject`.
            operation: As for `LocalDataPipeline.inject`.
            task_id: As for `LocalDataPipeline.inject`.
            pipeline_id: As for `LocalDataPipeline.inject`.
            times: As for `LocalDataPipeline.inject`.
            probability: As for `LocalDataPipeline.inject`.
        """
        await self._control(
            "inject",
            fault=fault.to_json(),
            operation=operation,
            task_id=task_id,
            pipeline_id=pipeline_id,
            times=times,
            probability=probability,
        )

    async def clear_faults(self) -> None:
        """Remove every fault injected."""
        await self._control("clear_faults")

    async def calls(self) -> list[Call]:
        """Every call received so far (the anyio times are the other process's clock)."""
        return [Call(**call) for call in await self._control("calls")]

    async def reports(self, task_id: str) -> list[Call]:
        """The ReportTaskProgress calls received for a task, in order of arrival.

        Args:
            task_id: The task.

        Returns:
            The calls.
        """
        return _reports_of(task_id, await self.calls())

    async def wait_for_calls(self, predicate: Callable[[list[Call]], bool]) -> list[Call]:
        """Wait until ``predicate(calls)`` holds; guard it with a timeout of your own.

        Args:
            predicate: Called with the calls so far, each time more arrive.

        Returns:
            The calls, once it holds.
        """
        while not predicate(calls := await self.calls()):
            await self._control("wait_for_calls", after=len(calls), longest=LONG_POLL)
        return calls

    async def wait_for_reports(self, task_id: str, count: int) -> list[Call]:
        """Wait until ``count`` reports for a task have arrived; guard it with a timeout.

        Args:
            task_id: The task.
            count: How many reports to wait for.

        Returns:
            All its reports so far.
        """
        calls = await self.wait_for_calls(lambda calls: len(_reports_of(task_id, calls)) >= count)
        return _reports_of(task_id, calls)

    async def attempt(self, task_id: str) -> dict[str, Any]:
        """The attempt a task was handed out for.

        Args:
            task_id: A task id the emulator handed out.

        Returns:
            The attempt object as DescribeObjects shows it, with the ``pipelineId`` it
            belongs to.
        """
        result: dict[str, Any] = await self._control("attempt", task_id=task_id)
        return result


def _reports_of(task_id: str, calls: list[Call]) -> list[Call]:
    return [c for c in calls if c.operation == "ReportTaskProgress" and c.task_id == task_id]
