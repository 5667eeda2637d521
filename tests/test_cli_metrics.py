"""`asyncheartbeat worker --metrics-port`: its usage errors, and a worker scraped over HTTP
while the local Data Pipeline cancels one of its tasks and it shuts down."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest

from asyncheartbeat._cli import main
from asyncheartbeat.testing import LocalDataPipeline

from .conftest import Waiter
from .test_cli_jobs import ENV, FAST, command
from .test_metrics import scrape
from .test_metrics import value as sample

pytestmark = pytest.mark.local_datapipeline(poll_timeout=0.2, report_timeout=2)

WORKER = ["worker", "--worker-group", "wg"]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as listening:
        yield listening.getsockname()[1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--metrics-port", "70000"], "'70000' is not a port number"),
        (["--metrics-port", "x"], "'x' is not a port number"),
        (["--metrics-host", "0.0.0.0"], "--metrics-host needs --metrics-port"),
        (["--metrics-port", "{taken}"], "--metrics-port {taken}: cannot listen on 127.0.0.1"),
    ],
)
def test_bad_metrics_options_are_usage_errors(
    options: list[str], message: str, taken_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port that is none, a host without a port, a port in use: exit 2, saying which."""
    argv = [*WORKER, *(o.format(taken=taken_port) for o in options), "--", "true"]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message.format(taken=taken_port) in capsys.readouterr().err


def test_metrics_port_without_the_prometheus_extra_is_a_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without prometheus-client, --metrics-port exits 2 and says what to install."""
    monkeypatch.delitem(sys.modules, "asyncheartbeat.metrics.prometheus", raising=False)
    for name in [m for m in sys.modules if m.split(".")[0] == "prometheus_client"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(SystemExit) as exited:
        main([*WORKER, "--metrics-port", "0", "--", "true"])
    assert exited.value.code == 2
    assert "--metrics-port: " in (err := capsys.readouterr().err)
    assert "pip install 'asyncheartbeat[prometheus]'" in err


class Output:
    """A process's standard output and error as they come, and a way to wait for text."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.text = {"out": "", "err": ""}
        self._waiter = Waiter()

    async def read(self, name: str) -> None:
        stream = self.process.stdout if name == "out" else self.process.stderr
        assert stream is not None
        async for chunk in stream:
            self.text[name] += chunk.decode()
            self._waiter.changed()

    async def wait_for(self, name: str, pattern: str) -> re.Match[str]:
        with anyio.fail_after(15):
            await self._waiter.until(lambda: re.search(pattern, self.text[name]))
        match = re.search(pattern, self.text[name])
        assert match is not None
        return match


@asynccontextmanager
async def worker_serving_metrics(argv: Sequence[str]) -> AsyncIterator[tuple[Output, str]]:
    """Start the worker, read its output as it comes, and yield it with its metrics URL."""
    process = await anyio.open_process(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
    )
    output = Output(process)
    async with process, anyio.create_task_group() as tg:
        tg.start_soon(output.read, "out")
        tg.start_soon(output.read, "err")
        yield output, (await output.wait_for("err", r"metrics at (http://\S+/metrics)\n")).group(1)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])


@pytest.mark.slow
@pytest.mark.asyncio
async def test_worker_serves_metrics_through_its_shutdown_and_leaves_nothing_listening(
    dp: LocalDataPipeline, tmp_path: Path
) -> None:
    """--metrics-port 0 prints the URL; a scrape counts the finished, failed and cancelled
    tasks and the stop's reason, still answers after SIGTERM while a task finishes in its
    grace, and once the worker has exited nothing listens on the port."""
    for name in ("ok", "bad", "cancel", "slow"):
        dp.add_pipeline(worker_group="wg", command=name, maximum_retries=0)
    release = tmp_path / "release"
    script = f"""
        case "$ASYNCHEARTBEAT_FIELD_command" in
        ok) exit 0 ;;
        bad) exit 4 ;;
        cancel) echo "cancel $ASYNCHEARTBEAT_TASK_ID"; exec sleep 30 ;;
        slow) echo slow-started; while [ ! -e {release} ]; do sleep 0.05; done ;;
        esac
    """
    argv = command(dp, *WORKER, "--metrics-port", "0", "--concurrency", "4",
                   "--shutdown-grace", "10", *FAST, "--", "sh", "-c", script)  # fmt: skip
    async with worker_serving_metrics(argv) as (output, url):
        process = output.process
        task_id = (await output.wait_for("out", r"cancel (\S+)\n")).group(1)
        dp.cancel_task(task_id)
        for ended in ("finished in", "failed after", "cancelled after [^\n]*requested"):
            await output.wait_for("err", ended)
        await output.wait_for("out", "slow-started")
        process.send_signal(signal.SIGTERM)
        await output.wait_for("err", "stopping: no new tasks")
        during_shutdown = await scrape(url)
        release.touch()
        with anyio.fail_after(15):
            await process.wait()
    assert process.returncode == 0, output.text["err"]

    def value(name: str, **labels: str) -> float:
        return sample(during_shutdown, name, **labels)

    tasks = {o: value("asyncheartbeat_tasks_total", outcome=o)
             for o in ("finished", "failed", "cancelled")}  # fmt: skip
    assert tasks == {"finished": 1, "failed": 1, "cancelled": 1}
    assert value("asyncheartbeat_stops_total", reason="requested") == 1
    assert value("asyncheartbeat_leases_held") == 1  # the slow task, in its grace
    assert value("asyncheartbeat_reports_total", outcome="answered") >= 4
    assert ("process_cpu_seconds_total", ()) in during_shutdown  # the default registry
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port_of(url)), timeout=5).close()


@pytest.mark.slow
@pytest.mark.asyncio
async def test_worker_stopped_at_once_by_a_second_sigterm_leaves_nothing_listening(
    dp: LocalDataPipeline,
) -> None:
    """Two SIGTERMs while a task runs and the endpoint serves: exit 143, and the port is
    closed (the endpoint went with the worker's event loop)."""
    dp.add_pipeline(worker_group="wg")
    argv = command(dp, *WORKER, "--metrics-port", "0", "--shutdown-grace", "30", *FAST,
                   "--", "sh", "-c", "echo started; exec sleep 30")  # fmt: skip
    async with worker_serving_metrics(argv) as (output, url):
        process = output.process
        await output.wait_for("out", "started")
        assert (await scrape(url))[("asyncheartbeat_leases_held", ())] == 1
        process.send_signal(signal.SIGTERM)
        await output.wait_for("err", "stopping: no new tasks")
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):
            await process.wait()
    assert process.returncode == 143, output.text["err"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port_of(url)), timeout=5).close()
