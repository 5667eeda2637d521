"""`asyncheartbeat emulator ctl` and the emulator's request log, against a local Data Pipeline.

ctl is a blocking command: each test runs it in a worker thread, so that the emulator keeps
serving on the test's event loop.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

import anyio
import pytest

from asyncheartbeat import CancelReason, Heartbeat, TaskStopped
from asyncheartbeat._cli import main
from asyncheartbeat.testing import LocalDataPipeline, pytest_plugin
from asyncheartbeat.testing._service import AttemptStatus

from .conftest import make_client


async def ctl(dp: LocalDataPipeline, *argv: str) -> int:
    """``asyncheartbeat emulator ctl --url dp.url ARGV``, in a thread; its exit status."""
    status: int = await anyio.to_thread.run_sync(main, ["emulator", "ctl", "--url", dp.url, *argv])
    return status


@pytest.mark.asyncio
async def test_ctl_adds_a_task_and_cancels_it(
    dp: LocalDataPipeline, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """add-task prints the id of a task handed out; cancel makes its next report say so."""
    assert await ctl(dp, "add-task", "--task-id", "copy-1", "--worker-group", "nightly") == 0
    assert capsys.readouterr().out == "copy-1\n"
    assert await ctl(dp, "cancel", "copy-1") == 0
    with anyio.fail_after(5), pytest.raises(TaskStopped) as stopped:
        async with Heartbeat(client, "copy-1", interval=0.1, lease_timeout=1):
            pytest.fail("the body ran")
    assert stopped.value.reason is CancelReason.REQUESTED
    assert dp.attempt("copy-1").status is AttemptStatus.CANCELED


@pytest.mark.asyncio
async def test_ctl_injects_a_fault_for_the_next_calls(dp: LocalDataPipeline, client: Any) -> None:
    """fault error CODE --times N meets exactly the next N matching reports."""
    task_id = dp.add_task()
    assert await ctl(
        dp, "fault", "error", "ThrottlingException", "--task-id", task_id, "--times", "2"
    ) == 0  # fmt: skip
    async with Heartbeat(client, task_id, interval=0.1, lease_timeout=2) as hb:
        await hb.beat()
    outcomes = [r.outcome for r in dp.reports(task_id)]
    assert outcomes[:3] == ["error:ThrottlingException"] * 2 + ["answered"]


@pytest.mark.asyncio
async def test_ctl_delete_forget_and_terminate_reach_the_service(
    dp: LocalDataPipeline, client: Any
) -> None:
    """delete, forget and terminate act as the Python API's moves do."""
    pipeline_id = dp.add_pipeline(worker_group="nightly", command="copy-rows")
    assert await ctl(dp, "delete", pipeline_id) == 0
    assert dp.service.pipelines[pipeline_id].deleted
    task_id = dp.add_task()
    assert await ctl(dp, "forget", task_id) == 0
    with pytest.raises(client.exceptions.TaskNotFoundException):
        await client.report_task_progress(taskId=task_id, fields=[])
    assert await ctl(dp, "terminate") == 0
    answer = await client.report_task_runner_heartbeat(taskrunnerId="r1", workerGroup="wg")
    assert answer["terminate"] is True


@pytest.mark.asyncio
async def test_ctl_prints_calls_and_attempts_as_json(
    dp: LocalDataPipeline, client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """calls prints one JSON object a line; attempt the object DescribeObjects shows."""
    task_id = dp.add_task()
    await client.report_task_progress(taskId=task_id, fields=[])
    capsys.readouterr()
    assert await ctl(dp, "calls") == 0
    [call] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (call["operation"], call["params"]["taskId"]) == ("ReportTaskProgress", task_id)
    assert await ctl(dp, "attempt", task_id) == 0
    attempt = json.loads(capsys.readouterr().out)
    assert attempt["pipelineId"] == dp.attempt(task_id).pipeline_id


@pytest.mark.asyncio
async def test_ctl_says_what_the_emulator_refused(
    dp: LocalDataPipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    """A move the emulator refuses exits 1 with its reason."""
    assert await ctl(dp, "cancel", "no-such-task") == 1
    assert "the emulator refused cancel_task: KeyError" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fault", "hang", "extra"], "a hang fault takes no argument"),
        (["fault", "error"], "needs its CODE"),
        (["fault", "delay", "soon"], "'soon' is not a number of seconds"),
        (["fault", "answer", "{oops"], "is not JSON"),
        (["fault", "drop", "--operation", "Nope"], "unknown operation 'Nope'"),
        (["fault", "drop", "--status", "500"], "--status and --message are for an error"),
        (["fault", "drop", "--probability", "2"], "--probability must be more than 0"),
        (["fault", "drop", "--times", "-1"], "'-1' is not a whole number"),
    ],
)
def test_ctl_refuses_bad_moves_naming_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each exits with status 2 and says what is wrong, before calling anything."""
    with pytest.raises(SystemExit) as exited:
        main(["emulator", "ctl", "--url", "http://127.0.0.1:9", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_ctl_needs_a_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --url or botocore's endpoint variables, ctl says which to give."""
    monkeypatch.delenv("AWS_ENDPOINT_URL_DATA_PIPELINE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["emulator", "ctl", "calls"])
    assert exited.value.code == 2
    assert "give --url, or set $AWS_ENDPOINT_URL_DATA_PIPELINE or $AWS_ENDPOINT_URL" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("url", ["notaurl", "127.0.0.1:4599", "ftp://127.0.0.1:4599"])
def test_ctl_refuses_a_url_that_is_not_http_naming_it(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A URL without http:// is a usage error naming it, not a traceback from urllib."""
    with pytest.raises(SystemExit) as exited:
        main(["emulator", "ctl", "--url", url, "calls"])
    assert exited.value.code == 2
    assert f"--url {url!r} is not an http:// URL" in capsys.readouterr().err


def test_ctl_says_when_no_emulator_answers(capsys: pytest.CaptureFixture[str]) -> None:
    """An unreachable URL exits 1, naming it."""
    assert main(["emulator", "ctl", "--url", "http://127.0.0.1:9", "calls"]) == 1
    assert "cannot reach an emulator at http://127.0.0.1:9" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_the_request_log_has_a_line_per_request(caplog: pytest.LogCaptureFixture) -> None:
    """log_requests: operation, status, latency and task id, in the line and as attributes."""
    caplog.set_level(logging.INFO, logger="asyncheartbeat.emulator")
    async with LocalDataPipeline(log_requests=True) as dp, make_client(dp) as client:
        task_id = dp.add_task()
        await client.report_task_progress(taskId=task_id, fields=[])
        with pytest.raises(Exception, match="TaskNotFoundException"):
            await client.report_task_progress(taskId="nobody", fields=[])
    records = [r for r in caplog.records if r.name == "asyncheartbeat.emulator"]
    facts = [
        (r.hb_operation, r.hb_status, r.hb_task_id)  # type: ignore[attr-defined]
        for r in records
    ]
    assert facts == [("ReportTaskProgress", 200, task_id), ("ReportTaskProgress", 400, "nobody")]
    assert all(r.hb_latency >= 0 for r in records)  # type: ignore[attr-defined]
    assert records[0].getMessage().startswith("ReportTaskProgress 200 ")
    assert records[0].getMessage().endswith(f" ms task {task_id!r}")


@pytest.mark.asyncio
async def test_no_request_is_logged_unless_asked(caplog: pytest.LogCaptureFixture) -> None:
    """By default the emulator logs nothing per request."""
    caplog.set_level(logging.INFO, logger="asyncheartbeat.emulator")
    async with LocalDataPipeline() as dp, make_client(dp) as client:
        await client.report_task_progress(taskId=dp.add_task(), fields=[])
    assert not [r for r in caplog.records if r.name == "asyncheartbeat.emulator"]


@pytest.mark.slow
def test_emulator_log_requests_prints_a_line_per_request() -> None:
    """`asyncheartbeat emulator --log-requests` prints each request on standard error."""
    with subprocess.Popen(
        [sys.executable, "-m", "asyncheartbeat", "emulator", "--log-requests",
         "--stop-when-stdin-closes"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as process:  # fmt: skip
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert main(["emulator", "ctl", "--url", url, "add-task", "--task-id", "copy-1"]) == 0
        assert main(["emulator", "ctl", "--url", url, "cancel", "copy-1"]) == 0
        _, err = process.communicate(input="", timeout=30)
    lines = [line for line in err.splitlines() if line.startswith("asyncheartbeat emulator: ")]
    assert [line.split()[2:4] for line in lines] == [
        ["_emulator/add_task", "200"], ["_emulator/cancel_task", "200"]
    ]  # fmt: skip


@pytest.mark.asyncio
async def test_aiobotocore_finds_the_emulator_through_the_endpoint_variable(
    dp: LocalDataPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_ENDPOINT_URL_DATA_PIPELINE points a client made without endpoint_url at it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DATA_PIPELINE", dp.url)
    task_id = dp.add_task()
    async with pytest_plugin.botocore_session().create_client(
        "datapipeline", region_name="us-east-1", aws_access_key_id="test",
        aws_secret_access_key="test", config=pytest_plugin.client_config(poll_timeout=90),
    ) as client:  # fmt: skip
        assert client.meta.endpoint_url == dp.url
        await client.report_task_progress(taskId=task_id, fields=[])
    assert len(dp.reports(task_id)) == 1
