"""The local Data Pipeline in a process of its own, so that client and server use two cores."""

from __future__ import annotations

import signal
import sys
from typing import Any

import aiohttp
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


class EmulatorProcess:
    """``async with EmulatorProcess() as dp``: `LocalDataPipeline` in another process.

    It runs ``python -m asyncheartbeat emulator`` and offers the same moves, awaited, over
    the emulator's control endpoint. Use it for benchmarks and soak runs.
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
        self._session: aiohttp.ClientSession | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the emulator process is not running: use `async with`")
        return self._url

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the emulator process is not running: use `async with`")
        return self._process.pid

    async def __aenter__(self) -> EmulatorProcess:
        self._process = await anyio.open_process(self._command, stdin=None, stderr=None)
        try:
            with anyio.fail_after(START_TIMEOUT):
                self._url = await self._read_url()
        except BaseException:
            await self._stop()
            raise
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
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
        process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(STOP_TIMEOUT, shield=True):
            await process.wait()
            return
        process.kill()
        await process.wait()

    async def _control(self, move: str, /, **args: Any) -> Any:
        if self._session is None:
            raise RuntimeError("the emulator process is not running: use `async with`")
        async with self._session.post(f"{self.url}{CONTROL_PREFIX}{move}", json=args) as answer:
            body = await answer.json()
        if "error" in body:
            raise ValueError(f"emulator refused {move}: {body['error']}")
        return body["result"]

    # The moves of LocalDataPipeline, awaited.

    async def add_task(
        self,
        task_id: str | None = None,
        *,
        worker_group: str = DEFAULT_WORKER_GROUP,
        report_progress_timeout: str | None = None,
        maximum_retries: int | None = None,
    ) -> str:
        """Make a task that a runner holds, as PollForTask would hand it out; return its id."""
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
    ) -> str:
        """Make and activate a one-activity pipeline whose task is ready; return its id."""
        result: str = await self._control(
            "add_pipeline",
            worker_group=worker_group,
            command=command,
            report_progress_timeout=report_progress_timeout,
            maximum_retries=maximum_retries,
        )
        return result

    async def cancel_task(self, task_id: str) -> None:
        await self._control("cancel_task", task_id=task_id)

    async def forget_task(self, task_id: str) -> None:
        await self._control("forget_task", task_id=task_id)

    async def delete_pipeline(self, pipeline_id: str) -> None:
        await self._control("delete_pipeline", pipeline_id=pipeline_id)

    async def set_terminate(
        self, terminate: bool = True, *, taskrunner_id: str | None = None
    ) -> None:
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
        await self._control("clear_faults")

    async def calls(self) -> list[Call]:
        """Every call received so far (the anyio times are the other process's clock)."""
        return [Call(**call) for call in await self._control("calls")]

    async def attempt(self, task_id: str) -> dict[str, Any]:
        """The attempt ``task_id`` was handed out for, as DescribeObjects shows it, with the
        ``pipelineId`` it belongs to."""
        result: dict[str, Any] = await self._control("attempt", task_id=task_id)
        return result
