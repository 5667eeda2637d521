"""trio: an aiobotocore client is refused at once; a boto3 client in threads works on both."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import anyio
import boto3
import pytest

from asyncheartbeat import (
    CancelReason,
    Heartbeat,
    HeartbeatError,
    Reporter,
    Task,
    TaskEvent,
    TaskRunner,
    TaskStopped,
    ThreadedClient,
)
from asyncheartbeat.testing import EmulatorProcess

from .conftest import ACCESS_KEY, SECRET_KEY, make_client

pytestmark = pytest.mark.anyio

TRIO_PAGE = Path(__file__).parent.parent / "docs" / "trio.md"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Each test here runs on asyncio and on trio."""
    backend: str = request.param
    return backend


@pytest.fixture
def boto3_session() -> boto3.session.Session:
    """A boto3 session with the suite's test credentials."""
    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
    )


def threaded(session: boto3.session.Session, dp: EmulatorProcess) -> ThreadedClient:
    """A boto3 client for ``dp``, wrapped."""
    return ThreadedClient(
        session.client("datapipeline", endpoint_url=dp.url, config=ThreadedClient.config())
    )


class Nowhere:
    url = "http://127.0.0.1:9"  # never called: the heartbeat refuses first


async def test_a_threaded_boto3_client_keeps_a_task_alive(
    boto3_session: boto3.session.Session,
) -> None:
    """Reports go out on schedule through worker threads, and the last progress lands."""
    async with EmulatorProcess() as dp:
        task_id = await dp.add_task()
        client = threaded(boto3_session, dp)
        with anyio.fail_after(20):
            async with Heartbeat(client, task_id, interval=0.1, lease_timeout=2) as hb:
                hb.set_field("rowsCopied", "10")
                await dp.wait_for_reports(task_id, 3)
                hb.set_field("rowsCopied", "20")
        attempt = await dp.attempt(task_id)
    assert hb.cancel_reason is None
    assert {f["key"]: f.get("stringValue") for f in attempt["fields"]}["rowsCopied"] == "20"


async def test_a_threaded_boto3_client_stops_the_work_when_the_task_is_cancelled(
    boto3_session: boto3.session.Session,
) -> None:
    """A cancellation reaches the work through a report answered in a thread."""
    async with EmulatorProcess() as dp:
        task_id = await dp.add_task()
        client = threaded(boto3_session, dp)
        with anyio.fail_after(20), pytest.raises(TaskStopped) as stopped:
            async with Heartbeat(client, task_id, interval=0.1, lease_timeout=2):
                await dp.wait_for_reports(task_id, 2)
                await dp.cancel_task(task_id)
                await anyio.sleep_forever()
    assert stopped.value.reason is CancelReason.REQUESTED


async def test_a_threaded_boto3_client_serves_a_task_runner(
    boto3_session: boto3.session.Session,
) -> None:
    """Polls, reports and SetTaskStatus all go through the threads."""
    async with EmulatorProcess(poll_timeout=0.5) as dp:
        await dp.add_pipeline(worker_group="threads")
        finished = anyio.Event()
        seen: list[TaskEvent] = []

        def note(event: TaskEvent) -> None:
            seen.append(event)
            if event.kind == "finished":
                finished.set()

        async def handle(task: Task, hb: Heartbeat) -> None:
            hb.set_field("rowsCopied", "5")

        runner = TaskRunner(
            threaded(boto3_session, dp), worker_group="threads", handler=handle,
            interval=0.1, lease_timeout=2, on_event=note,
        )  # fmt: skip
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(runner.run)
                await finished.wait()
                runner.stop()
        calls = await dp.calls()
    assert [e.kind for e in seen] == ["started", "finished"]
    statuses = [c.params["taskStatus"] for c in calls if c.operation == "SetTaskStatus"]
    assert statuses == ["FINISHED"]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_an_aiobotocore_client_on_trio_is_refused_at_construction() -> None:
    """Heartbeat and TaskRunner refuse it when made, naming the fix."""

    async def handle(task: Task, hb: Heartbeat) -> None:
        pass

    async with make_client(Nowhere()) as client:  # type: ignore[arg-type]
        with pytest.raises(HeartbeatError, match=r"runs on trio.*ThreadedClient"):
            Heartbeat(client, "task-1")
        with pytest.raises(HeartbeatError, match=r"runs on trio.*ThreadedClient"):
            TaskRunner(client, worker_group="wg", handler=handle)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_reporter_made_outside_the_loop_is_refused_on_trio_when_used() -> None:
    """A layer made where no loop runs (a thread) is refused by a heartbeat given it, and
    by its first call."""
    async with make_client(Nowhere()) as client:  # type: ignore[arg-type]
        layer = await anyio.to_thread.run_sync(Reporter, client)
        with pytest.raises(HeartbeatError, match="runs on trio"):
            Heartbeat(layer, "task-1")
        with anyio.fail_after(5), pytest.raises(HeartbeatError, match="asyncio only"):
            await layer.calls.call(
                "ReportTaskProgress", {"taskId": "task-1", "fields": []},
                deadline=anyio.current_time() + 5,
            )  # fmt: skip


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_threaded_client_refuses_an_async_client_and_a_stranger() -> None:
    """ThreadedClient wraps sync boto3 clients only, and says what to do instead."""
    async with make_client(Nowhere()) as client:  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="aiobotocore client, async already"):
            ThreadedClient(client)
    with pytest.raises(TypeError, match="no report_task_progress method"):
        ThreadedClient(object())


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_bare_boto3_client_is_refused_naming_threaded_client(
    boto3_session: boto3.session.Session,
) -> None:
    """A sync client given as it is would block the loop: the error names the wrapper."""
    client = boto3_session.client("datapipeline", endpoint_url=Nowhere.url)
    with pytest.raises(TypeError, match=r"ThreadedClient\(client\)"):
        Heartbeat(client, "task-1")


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_trio_page_example_runs_a_task_on_trio(tmp_path: Path) -> None:
    """docs/trio.md's example, run as it is on trio, polls a task, heartbeats and ends it."""
    example = re.findall(r"```python\n(.*?)```", TRIO_PAGE.read_text(), re.DOTALL)
    (tmp_path / "example.py").write_text(example[0])
    async with EmulatorProcess() as dp:
        await dp.add_pipeline(worker_group="wg")
        env = {
            "PATH": os.environ["PATH"], "HOME": str(tmp_path),
            "AWS_ENDPOINT_URL_DATA_PIPELINE": dp.url, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        }  # fmt: skip
        result = await anyio.run_process(
            [sys.executable, str(tmp_path / "example.py")], env=env, check=False
        )
        assert result.returncode == 0, result.stderr.decode()
        calls = await dp.calls()
    operations = [c.operation for c in calls]
    assert operations[0] == "PollForTask"
    assert operations[-1] == "SetTaskStatus"
    assert set(operations[1:-1]) == {"ReportTaskProgress"}
    assert all(c.outcome == "answered" for c in calls)
    assert calls[0].params["workerGroup"] == "wg"
