"""The local Data Pipeline's task lifecycle, leases and validation, through real clients."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import boto3
import pytest
import pytest_asyncio
from botocore.exceptions import ClientError

from asyncheartbeat.testing import Fault, LocalDataPipeline

from .conftest import LATE, client_config, make_client

pytestmark = pytest.mark.asyncio

WORKER_GROUP = "wg-1"


def activity(
    activity_id: str = "Copy", worker_group: str = WORKER_GROUP, **fields: str
) -> dict[str, Any]:
    fields = {"type": "ShellCommandActivity", "workerGroup": worker_group, **fields}
    return {
        "id": activity_id,
        "name": activity_id,
        "fields": [{"key": k, "stringValue": v} for k, v in fields.items()],
    }


async def make_pipeline(client: Any, *objects: dict[str, Any], activate: bool = True) -> str:
    created = await client.create_pipeline(name="test", uniqueId=f"u-{id(objects)}")
    pipeline_id: str = created["pipelineId"]
    result = await client.put_pipeline_definition(
        pipelineId=pipeline_id, pipelineObjects=list(objects) or [activity()]
    )
    assert not result["errored"], result
    if activate:
        await client.activate_pipeline(pipelineId=pipeline_id)
    return pipeline_id


async def error_code(call: Any) -> str:
    with pytest.raises(ClientError) as caught:
        await call
    return str(caught.value.response["Error"]["Code"])


async def describe(client: Any, pipeline_id: str, object_id: str) -> dict[str, str]:
    answer = await client.describe_objects(pipelineId=pipeline_id, objectIds=[object_id])
    [obj] = answer["pipelineObjects"]
    return {f["key"]: f.get("stringValue", f.get("refValue")) for f in obj["fields"]}


async def next_task(client: Any, worker_group: str = WORKER_GROUP) -> dict[str, Any]:
    """Poll as a runner does, again after each empty answer, until a task comes."""
    while "taskObject" not in (answer := await client.poll_for_task(workerGroup=worker_group)):
        pass
    task: dict[str, Any] = answer["taskObject"]
    return task


@pytest_asyncio.fixture
async def fast_dp() -> AsyncIterator[LocalDataPipeline]:
    """A local Data Pipeline whose every duration is short enough for a test."""
    async with LocalDataPipeline(ack_timeout=0.3, report_timeout=0.5, poll_timeout=0.3) as dp:
        yield dp


@pytest_asyncio.fixture
async def fast_client(fast_dp: LocalDataPipeline) -> AsyncIterator[Any]:
    async with make_client(fast_dp) as client:
        yield client


async def test_a_task_runs_from_activation_to_finished(dp: LocalDataPipeline, client: Any) -> None:
    """Activate, poll, acknowledge, report fields, finish: DescribeObjects shows each step."""
    pipeline_id = await make_pipeline(client)
    task = (await client.poll_for_task(workerGroup=WORKER_GROUP, hostname="runner-1"))["taskObject"]
    assert task["pipelineId"] == pipeline_id
    assert task["attemptId"] == task["objects"][task["attemptId"]]["id"]
    assert "Copy" in task["objects"]
    attempt = task["attemptId"]
    assert (await describe(client, pipeline_id, attempt))["@status"] == "WAITING_FOR_RUNNER"

    fields = [{"key": "rows", "stringValue": "10"}, {"key": "input", "refValue": "Copy"}]
    answer = await client.report_task_progress(taskId=task["taskId"], fields=fields)
    assert answer["canceled"] is False
    seen = await describe(client, pipeline_id, attempt)
    assert (seen["@status"], seen["rows"], seen["input"], seen["@hostname"]) == (
        "RUNNING",
        "10",
        "Copy",
        "runner-1",
    )

    await client.set_task_status(taskId=task["taskId"], taskStatus="FINISHED")
    assert (await describe(client, pipeline_id, attempt))["@status"] == "FINISHED"
    assert await error_code(client.report_task_progress(taskId=task["taskId"])) == (
        "TaskNotFoundException"
    )


async def test_set_status_cancel_answers_the_next_report_canceled(client: Any) -> None:
    """SetStatus CANCEL on the activity makes the running attempt's reports answer canceled."""
    pipeline_id = await make_pipeline(client)
    task = (await client.poll_for_task(workerGroup=WORKER_GROUP))["taskObject"]
    await client.report_task_progress(taskId=task["taskId"])
    await client.set_status(pipelineId=pipeline_id, objectIds=["Copy"], status="CANCEL")
    assert (await client.report_task_progress(taskId=task["taskId"]))["canceled"] is True
    assert (await describe(client, pipeline_id, task["attemptId"]))["@status"] == "CANCELED"
    await client.set_task_status(taskId=task["taskId"], taskStatus="FINISHED")  # changes nothing
    assert (await describe(client, pipeline_id, task["attemptId"]))["@status"] == "CANCELED"


async def test_a_failed_task_is_retried_up_to_maximum_retries(fast_client: Any) -> None:
    """FAILED makes a new attempt until maximumRetries is used up; errors land on the attempt."""
    pipeline_id = await make_pipeline(fast_client, activity(maximumRetries="1"))
    attempts = []
    for _ in range(2):
        task = (await fast_client.poll_for_task(workerGroup=WORKER_GROUP))["taskObject"]
        attempts.append(task["attemptId"])
        await fast_client.set_task_status(
            taskId=task["taskId"],
            taskStatus="FAILED",
            errorId="Boom",
            errorMessage="it broke",
            errorStackTrace="line 1",
        )
    assert [a.rsplit("=", 1)[1] for a in attempts] == ["1", "2"]
    failed = await describe(fast_client, pipeline_id, attempts[1])
    assert (failed["@status"], failed["errorId"], failed["errorMessage"]) == (
        "FAILED",
        "Boom",
        "it broke",
    )
    assert "taskObject" not in await fast_client.poll_for_task(workerGroup=WORKER_GROUP)
    listed = await fast_client.query_objects(pipelineId=pipeline_id, sphere="ATTEMPT")
    assert listed["ids"] == attempts


async def test_a_precondition_answered_false_ends_its_attempt(client: Any) -> None:
    """SetTaskStatus FALSE (for preconditions) ends the attempt as FALSE, with no retry."""
    pipeline_id = await make_pipeline(client)
    task = (await client.poll_for_task(workerGroup=WORKER_GROUP))["taskObject"]
    await client.set_task_status(taskId=task["taskId"], taskStatus="FALSE")
    assert (await describe(client, pipeline_id, task["attemptId"]))["@status"] == "FALSE"
    listed = await client.query_objects(pipelineId=pipeline_id, sphere="ATTEMPT")
    assert listed["ids"] == [task["attemptId"]]


async def test_error_ids_reserved_for_the_service_are_refused(client: Any) -> None:
    """errorId must not start with Service_, as the API reference says."""
    await make_pipeline(client)
    task = (await client.poll_for_task(workerGroup=WORKER_GROUP))["taskObject"]
    call = client.set_task_status(taskId=task["taskId"], taskStatus="FAILED", errorId="Service_X")
    assert await error_code(call) == "InvalidRequestException"


async def test_an_unacknowledged_task_is_handed_out_again(
    fast_dp: LocalDataPipeline, fast_client: Any
) -> None:
    """No report within the ack timeout: the same attempt goes to the next poller, new task id."""
    await make_pipeline(fast_client)
    first = (await fast_client.poll_for_task(workerGroup=WORKER_GROUP))["taskObject"]
    with anyio.fail_after(2):
        second = await next_task(fast_client)
    assert second["attemptId"] == first["attemptId"]
    assert second["taskId"] != first["taskId"]
    assert await error_code(fast_client.report_task_progress(taskId=first["taskId"])) == (
        "TaskNotFoundException"
    )


async def test_a_silent_task_becomes_a_new_attempt(
    fast_dp: LocalDataPipeline, fast_client: Any
) -> None:
    """Acknowledged, then silent past the report timeout: TIMEDOUT, and a new attempt is ready."""
    pipeline_id = await make_pipeline(fast_client)
    first = (await fast_client.poll_for_task(workerGroup=WORKER_GROUP))["taskObject"]
    started = anyio.current_time()  # before the server sees the report, whose timeout counts
    await fast_client.report_task_progress(taskId=first["taskId"])
    with anyio.fail_after(2):
        second = await next_task(fast_client)
    assert 0.5 <= anyio.current_time() - started < 0.5 + LATE
    assert second["attemptId"].endswith("Attempt=2")
    status = await describe(fast_client, pipeline_id, first["attemptId"])
    assert status["@status"] == "TIMEDOUT"
    assert await error_code(fast_client.report_task_progress(taskId=first["taskId"])) == (
        "TaskNotFoundException"
    )


async def test_attempt_shows_a_lapsed_lease_without_another_call(
    fast_dp: LocalDataPipeline, fast_client: Any
) -> None:
    """attempt() reads the state as of now: a lease that ran out since the last call shows."""
    task_id = fast_dp.add_task()
    await fast_client.report_task_progress(taskId=task_id)
    assert fast_dp.attempt(task_id).status.value == "RUNNING"
    await anyio.sleep(0.6)  # past the 0.5 s report timeout, with no call in between
    assert fast_dp.attempt(task_id).status.value == "TIMEDOUT"


async def test_a_forgotten_task_is_ready_again_as_a_new_attempt(
    dp: LocalDataPipeline, client: Any
) -> None:
    """forget_task acts as a lease running out: TaskNotFound for the holder, a new attempt."""
    task_id = dp.add_task(worker_group=WORKER_GROUP)
    await client.report_task_progress(taskId=task_id)
    dp.forget_task(task_id)
    assert await error_code(client.report_task_progress(taskId=task_id)) == "TaskNotFoundException"
    task = (await client.poll_for_task(workerGroup=WORKER_GROUP))["taskObject"]
    assert task["attemptId"].endswith("Attempt=2")
    assert dp.attempt(task_id).status == "TIMEDOUT"


async def test_reports_keep_the_lease(fast_dp: LocalDataPipeline, fast_client: Any) -> None:
    """A task reported on more often than its report timeout stays with its runner."""
    await make_pipeline(fast_client)
    task = (await fast_client.poll_for_task(workerGroup=WORKER_GROUP))["taskObject"]
    for _ in range(6):
        answer = await fast_client.report_task_progress(taskId=task["taskId"])
        assert answer["canceled"] is False
        await anyio.sleep(0.2)  # the runner's own cadence, under the 0.5 s report timeout


async def test_report_progress_timeout_comes_from_the_definition(fast_client: Any) -> None:
    """An activity's reportProgressTimeout replaces the default report timeout."""
    await make_pipeline(fast_client, activity(reportProgressTimeout="1 seconds"))
    task = (await fast_client.poll_for_task(workerGroup=WORKER_GROUP))["taskObject"]
    await fast_client.report_task_progress(taskId=task["taskId"])
    await anyio.sleep(0.7)  # past the emulator's 0.5 s default, within the activity's 1 s
    assert (await fast_client.report_task_progress(taskId=task["taskId"]))["canceled"] is False


async def test_a_long_poll_returns_empty_after_the_poll_timeout(fast_client: Any) -> None:
    """With nothing ready, PollForTask holds the call for the poll timeout, then answers {}."""
    started = anyio.current_time()
    answer = await fast_client.poll_for_task(workerGroup="nobody")
    assert "taskObject" not in answer
    # Not sooner than the timeout; later only by what a busy machine adds.
    assert 0.3 <= anyio.current_time() - started < 1.5


async def test_a_waiting_poll_gets_a_task_as_soon_as_it_is_ready(
    dp: LocalDataPipeline, client: Any
) -> None:
    """A poller already waiting is handed a task the moment its pipeline is activated."""
    pipeline_id = await make_pipeline(client, activate=False)
    got: list[dict[str, Any]] = []

    async def poll() -> None:
        got.append((await client.poll_for_task(workerGroup=WORKER_GROUP))["taskObject"])

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(poll)
            await dp.wait_for_calls(lambda calls: calls[-1].operation == "PollForTask")
            await client.activate_pipeline(pipelineId=pipeline_id)
    assert got[0]["pipelineId"] == pipeline_id


async def test_tasks_go_only_to_their_worker_group(fast_client: Any) -> None:
    """A poller of another worker group never sees the task."""
    await make_pipeline(fast_client, activity(worker_group="wg-a"))
    assert "taskObject" not in await fast_client.poll_for_task(workerGroup="wg-b")
    assert "taskObject" in await fast_client.poll_for_task(workerGroup="wg-a")


async def test_the_worker_group_may_come_from_the_default_object(fast_client: Any) -> None:
    """Fields are inherited from the Default object, as in pipeline definitions."""
    default = {
        "id": "Default",
        "name": "Default",
        "fields": [{"key": "workerGroup", "stringValue": "wg-d"}],
    }
    copy = {
        "id": "Copy",
        "name": "Copy",
        "fields": [{"key": "type", "stringValue": "CopyActivity"}],
    }
    await make_pipeline(fast_client, default, copy)
    assert "taskObject" in await fast_client.poll_for_task(workerGroup="wg-d")


async def test_deactivating_cancels_running_attempts(client: Any) -> None:
    """DeactivatePipeline (cancelActive by default) cancels what runs and hands out nothing."""
    pipeline_id = await make_pipeline(client)
    task = (await client.poll_for_task(workerGroup=WORKER_GROUP))["taskObject"]
    await client.deactivate_pipeline(pipelineId=pipeline_id)
    assert (await client.report_task_progress(taskId=task["taskId"]))["canceled"] is True
    described = await client.describe_pipelines(pipelineIds=[pipeline_id])
    fields = {f["key"]: f["stringValue"] for f in described["pipelineDescriptionList"][0]["fields"]}
    assert fields["@pipelineState"] == "INACTIVE"


async def test_deleting_a_pipeline_refuses_its_tasks(client: Any) -> None:
    """After DeletePipeline, reports and status for its tasks get PipelineDeletedException."""
    pipeline_id = await make_pipeline(client)
    task = (await client.poll_for_task(workerGroup=WORKER_GROUP))["taskObject"]
    await client.delete_pipeline(pipelineId=pipeline_id)
    assert await error_code(client.report_task_progress(taskId=task["taskId"])) == (
        "PipelineDeletedException"
    )
    assert await error_code(
        client.set_task_status(taskId=task["taskId"], taskStatus="FINISHED")
    ) == ("PipelineDeletedException")
    assert await error_code(client.describe_pipelines(pipelineIds=[pipeline_id])) == (
        "PipelineDeletedException"
    )
    assert pipeline_id not in [p["id"] for p in (await client.list_pipelines())["pipelineIdList"]]
    assert await error_code(client.delete_pipeline(pipelineId=pipeline_id)) == (
        "PipelineNotFoundException"
    )


async def test_paused_components_are_held_until_resumed(fast_client: Any) -> None:
    """SetStatus PAUSE holds an activity's task back; RESUME hands it out again."""
    pipeline_id = await make_pipeline(fast_client, activate=False)
    await fast_client.set_status(pipelineId=pipeline_id, objectIds=["Copy"], status="PAUSE")
    await fast_client.activate_pipeline(pipelineId=pipeline_id)
    assert "taskObject" not in await fast_client.poll_for_task(workerGroup=WORKER_GROUP)
    await fast_client.set_status(pipelineId=pipeline_id, objectIds=["Copy"], status="RESUME")
    assert "taskObject" in await fast_client.poll_for_task(workerGroup=WORKER_GROUP)


async def test_set_status_refuses_what_it_cannot_do(client: Any) -> None:
    """Unknown objects, a mix of instances and components, and unemulated statuses are refused."""
    pipeline_id = await make_pipeline(client)
    task = (await client.poll_for_task(workerGroup=WORKER_GROUP))["taskObject"]
    for object_ids, status in [
        (["Nope"], "CANCEL"),
        (["Copy", task["attemptId"]], "CANCEL"),
        ([task["attemptId"]], "RERUN"),
    ]:
        call = client.set_status(pipelineId=pipeline_id, objectIds=object_ids, status=status)
        assert await error_code(call) == "InvalidRequestException"


async def test_runner_heartbeats_answer_terminate_when_told(
    dp: LocalDataPipeline, client: Any
) -> None:
    """ReportTaskRunnerHeartbeat is recorded and answers terminate as set from outside."""
    heartbeat = client.report_task_runner_heartbeat
    assert (await heartbeat(taskrunnerId="r1", workerGroup="wg"))["terminate"] is False
    dp.set_terminate(taskrunner_id="r1")
    assert (await heartbeat(taskrunnerId="r1"))["terminate"] is True
    assert (await heartbeat(taskrunnerId="r2"))["terminate"] is False
    dp.set_terminate()
    assert (await heartbeat(taskrunnerId="r2"))["terminate"] is True
    assert dp.service.runners["r1"]["workerGroup"] == "wg"


async def test_create_pipeline_is_idempotent_on_unique_id(client: Any) -> None:
    """The same name and uniqueId give the same pipeline, as the service documents."""
    first = await client.create_pipeline(name="n", uniqueId="same")
    second = await client.create_pipeline(name="n", uniqueId="same")
    assert first["pipelineId"] == second["pipelineId"]
    assert first["pipelineId"].startswith("df-")


async def test_a_definition_with_errors_is_not_saved(client: Any) -> None:
    """Broken references and bad periods come back as validationErrors, and errored is true."""
    pipeline_id = (await client.create_pipeline(name="n", uniqueId="bad"))["pipelineId"]
    broken = activity(reportProgressTimeout="soon")
    broken["fields"].append({"key": "input", "refValue": "Missing"})
    result = await client.put_pipeline_definition(pipelineId=pipeline_id, pipelineObjects=[broken])
    assert result["errored"] is True
    [errors] = result["validationErrors"]
    assert errors["id"] == "Copy"
    assert any("Missing" in e for e in errors["errors"])
    assert any("reportProgressTimeout" in e for e in errors["errors"])
    assert await error_code(client.activate_pipeline(pipelineId=pipeline_id)) == (
        "InvalidRequestException"
    )


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        ({}, "ValidationException", "Value null at 'taskId' failed to satisfy constraint"),
        (
            {"taskId": ""},
            "ValidationException",
            "Member must have length greater than or equal to 1",
        ),
        ({"taskId": "t" * 2049}, "ValidationException", "less than or equal to 2048"),
        ({"taskId": "t\x01"}, "ValidationException", "regular expression pattern"),
        ({"taskId": 5}, "SerializationException", "expected a string at 'taskId'"),
        (
            {"taskId": "t", "fields": [{"key": "k" * 257, "stringValue": "v"}]},
            "ValidationException",
            "at 'fields.1.member.key'",
        ),
    ],
)
async def test_requests_are_checked_against_the_model(
    dp: LocalDataPipeline, params: dict[str, Any], code: str, message: str
) -> None:
    """A client that skips its own validation meets the service's: code and AWS's wording."""
    async with make_client(dp, client_config(parameter_validation=False)) as client:
        with pytest.raises(ClientError) as caught:
            await client.report_task_progress(**params)
    error = caught.value.response["Error"]
    assert error["Code"] == code
    assert message in error["Message"]


async def test_task_ids_never_start_with_a_dash(dp: LocalDataPipeline) -> None:
    """Task ids are 43 URL-safe characters and never look like a command-line option."""
    # One in 64 random ids would start with '-', which the AWS CLI reads as an option.
    task_ids = [dp.add_task() for _ in range(1000)]
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{42}", task_id) for task_id in task_ids)


async def test_enum_members_are_checked(dp: LocalDataPipeline) -> None:
    """A taskStatus outside the model's enum is a ValidationException naming the values."""
    async with make_client(dp, client_config(parameter_validation=False)) as client:
        call = client.set_task_status(taskId="t", taskStatus="DONE")
        with pytest.raises(ClientError, match=r"enum value set: \[FINISHED, FAILED, FALSE\]"):
            await call


async def test_faults_can_be_scoped_to_a_pipeline_and_drawn_by_seed(client: Any) -> None:
    """A seeded probabilistic fault on one pipeline gives the same outcomes every run."""

    async def outcomes(seed: int) -> list[str]:
        async with LocalDataPipeline(seed=seed) as dp, make_client(dp) as c:
            hit, spared = dp.add_task(), dp.add_task()
            dp.inject(
                Fault.error("ThrottlingException"),
                pipeline_id=dp.attempt(hit).pipeline_id,
                times=None,
                probability=0.5,
            )
            for _ in range(20):
                for task_id in (hit, spared):
                    with contextlib.suppress(ClientError):
                        await c.report_task_progress(taskId=task_id)
            assert {call.outcome for call in dp.reports(spared)} == {"answered"}
            return [call.outcome for call in dp.reports(hit)]

    first, again, other = await outcomes(7), await outcomes(7), await outcomes(8)
    assert first == again
    assert first != other
    assert 4 <= first.count("error:ThrottlingException") <= 16


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.expired_token(), "ExpiredTokenException"),
        (Fault.invalid_signature(), "InvalidSignatureException"),
    ],
)
async def test_an_auth_fault_refuses_every_nth_call_of_its_operation(
    dp: LocalDataPipeline, client: Any, fault: Fault, code: str
) -> None:
    """every=3: the 3rd and 6th reports meet the auth error (HTTP 400); other calls pass."""
    task_id = dp.add_task()
    dp.inject(fault, operation="ReportTaskProgress", every=3, times=None)
    refused = []
    for _ in range(6):
        await client.report_task_runner_heartbeat(taskrunnerId="r1", workerGroup="wg")
        try:
            await client.report_task_progress(taskId=task_id, fields=[])
        except ClientError as error:
            refused.append(error.response)
    assert [r["Error"]["Code"] for r in refused] == [code, code]
    assert {r["ResponseMetadata"]["HTTPStatusCode"] for r in refused} == {400}
    outcomes = [r.outcome for r in dp.reports(task_id)]
    assert outcomes == (["answered"] * 2 + [f"error:{code}"]) * 2
    assert {c.outcome for c in dp.calls if c.operation != "ReportTaskProgress"} == {"answered"}


async def test_boto3_drives_the_same_lifecycle(dp: LocalDataPipeline) -> None:
    """The synchronous boto3 client works against it unchanged."""

    def lifecycle() -> tuple[bool, bool]:
        client = boto3.client(
            "datapipeline",
            region_name="us-east-1",
            endpoint_url=dp.url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        pipeline_id = client.create_pipeline(name="sync", uniqueId="sync")["pipelineId"]
        client.put_pipeline_definition(pipelineId=pipeline_id, pipelineObjects=[activity()])
        client.activate_pipeline(pipelineId=pipeline_id)
        task = client.poll_for_task(workerGroup=WORKER_GROUP)["taskObject"]
        before = client.report_task_progress(taskId=task["taskId"])["canceled"]
        client.set_status(pipelineId=pipeline_id, objectIds=["Copy"], status="CANCEL")
        after = client.report_task_progress(taskId=task["taskId"])["canceled"]
        return before, after

    with anyio.fail_after(10):
        assert await anyio.to_thread.run_sync(lifecycle) == (False, True)


@pytest.mark.slow
async def test_thousands_of_concurrent_polls_each_get_one_task(
    dp: LocalDataPipeline,
) -> None:
    """2,000 pollers wait at once; 2,000 tasks made ready go out once each, none lost."""
    count = 2000
    # One connection more than the pollers hold, for the activation. Client and server share
    # this process, so 2,000 connects take a while to be accepted.
    config = client_config(max_pool_connections=count + 1, connect_timeout=30, read_timeout=30)
    async with make_client(dp, config) as client:
        pipeline_id = await make_pipeline(
            client, *[activity(f"A{n}") for n in range(count)], activate=False
        )
        got: list[str] = []

        async def poll() -> None:
            answer = await client.poll_for_task(workerGroup=WORKER_GROUP)
            got.append(answer["taskObject"]["attemptId"])

        with anyio.fail_after(45):
            async with anyio.create_task_group() as tg:
                for _ in range(count):
                    tg.start_soon(poll)
                await dp.wait_for_calls(
                    lambda calls: sum(c.operation == "PollForTask" for c in calls) == count
                )
                await client.activate_pipeline(pipelineId=pipeline_id)
    assert len(got) == len(set(got)) == count
