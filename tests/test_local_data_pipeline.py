"""The local Data Pipeline speaks the service's wire protocol and survives bad requests."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError

from asyncheartbeat.testing import Fault, LocalDataPipeline

SIGNED = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=k/20261122/us-east-1/datapipeline/aws4_request"
}
JSON_11 = "application/x-amz-json-1.1"


async def post(dp: LocalDataPipeline, body: bytes, **headers: str) -> tuple[int, dict[str, Any]]:
    default = {"X-Amz-Target": "DataPipeline.ReportTaskProgress", "Content-Type": JSON_11}
    async with (
        aiohttp.ClientSession() as session,
        session.post(dp.url, data=io.BytesIO(body), headers=SIGNED | default | headers) as response,
    ):
        return response.status, json.loads(await response.read())


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"{not json", {}, 400, "SerializationException"),
        (b"[1, 2]", {}, 400, "SerializationException"),
        (b"{}", {"X-Amz-Target": "Other.ReportTaskProgress"}, 400, "UnknownOperationException"),
        (b"{}", {"X-Amz-Target": "DataPipeline.Frobnicate"}, 400, "UnknownOperationException"),
        (b"{}", {"Content-Type": "application/json"}, 400, "SerializationException"),
        (b"{}", {"Authorization": ""}, 403, "MissingAuthenticationTokenException"),
        (b'{"taskId": "nope"}', {}, 400, "TaskNotFoundException"),
    ],
)
async def test_bad_requests_get_the_services_error_shape(
    dp: LocalDataPipeline, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    """Each bad request is answered with {"__type", "message"}, and the server serves on."""
    answer_status, answer = await post(dp, body, **headers)
    assert (answer_status, answer["__type"]) == (status, code)
    assert answer["message"]
    task_id = dp.add_task()
    assert await post(dp, json.dumps({"taskId": task_id}).encode()) == (200, {"canceled": False})


@pytest.mark.asyncio
async def test_an_oversized_body_is_refused(dp: LocalDataPipeline) -> None:
    """A body over the limit gets an error, not a crash."""
    status, answer = await post(dp, b'{"taskId": "' + b"x" * 2_000_000 + b'"}')
    assert status == 413
    assert answer["__type"] == "SerializationException"


@pytest.mark.asyncio
async def test_botocore_reads_injected_errors_as_the_service_s(
    dp: LocalDataPipeline, client: Any
) -> None:
    """An injected error reaches botocore as a ClientError with the code and status."""
    task_id = dp.add_task()
    dp.inject(Fault.error("InternalServiceError", message="try later"), task_id=task_id)
    with pytest.raises(ClientError) as caught:
        await client.report_task_progress(taskId=task_id, fields=[])
    error = caught.value.response
    assert error["Error"] == {"Code": "InternalServiceError", "Message": "try later"}
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert await client.report_task_progress(taskId=task_id, fields=[]) | {
        "ResponseMetadata": None
    } == {"canceled": False, "ResponseMetadata": None}


@pytest.mark.asyncio
async def test_faults_are_scripted_per_task_and_counted(dp: LocalDataPipeline, client: Any) -> None:
    """A fault for one task, used up after `times`, leaves other tasks alone."""
    first, second = dp.add_task(), dp.add_task()
    dp.inject(Fault.error("ThrottlingException"), task_id=first, times=2)
    for _ in range(3):
        for task_id in (first, second):
            with contextlib.suppress(ClientError):
                await client.report_task_progress(taskId=task_id, fields=[])
    assert [c.outcome for c in dp.reports(first)] == ["error:ThrottlingException"] * 2 + [
        "answered"
    ]
    assert [c.outcome for c in dp.reports(second)] == ["answered"] * 3


@pytest.mark.asyncio
async def test_reports_record_fields_on_the_task(dp: LocalDataPipeline, client: Any) -> None:
    """The latest value of each reported field is kept on the task."""
    task_id = dp.add_task()
    await client.report_task_progress(
        taskId=task_id, fields=[{"key": "a", "stringValue": "1"}, {"key": "b", "refValue": "@x"}]
    )
    await client.report_task_progress(taskId=task_id, fields=[{"key": "a", "stringValue": "2"}])
    assert dp.attempt(task_id).fields == {"a": "2", "b": "@x"}


def test_fault_constructors_refuse_nonsense() -> None:
    """A fault that cannot be acted out is refused when it is made."""
    with pytest.raises(ValueError, match="error code"):
        Fault.error("")
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Fault.error("X", status=200)
    with pytest.raises(ValueError, match="seconds"):
        Fault.delay(-1)


def test_the_url_needs_a_running_server() -> None:
    """Asking for the URL of a server that is not running says so."""
    with pytest.raises(RuntimeError, match="not running"):
        _ = LocalDataPipeline().url
