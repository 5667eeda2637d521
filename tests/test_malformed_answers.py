"""An answer botocore cannot read (a JSON null, a list, a string) is the service's malformed
answer wherever it comes, retried like any bad answer, never taken for a mistake in the
program; a proxy's 407, which is the client's configuration, is refused at once. Over
real HTTP against the local Data Pipeline."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from asyncheartbeat import Heartbeat, HeartbeatError
from asyncheartbeat.instrumentation import EventKind
from asyncheartbeat.testing import Fault, LocalDataPipeline

from .conftest import EventLog, run_one_task

pytestmark = pytest.mark.asyncio

BODIES: list[object] = [None, [], "x", 5]


@pytest.mark.parametrize("body", BODIES, ids=repr)
async def test_a_report_answered_with_an_unreadable_body_is_retried(
    dp: LocalDataPipeline, client: Any, events: EventLog, body: object
) -> None:
    """The acknowledgement and a later report each meet one unreadable answer: both are
    retried, and the work goes on."""
    task_id = dp.add_task()
    dp.inject(Fault.answer(body), task_id=task_id)
    with anyio.fail_after(5):
        async with Heartbeat(client, task_id, interval=0.1, lease_timeout=1) as hb:
            dp.inject(Fault.answer(body), task_id=task_id)
            await hb.beat()
    assert hb.cancel_reason is None
    assert len(events.of(EventKind.RETRIED, task_id)) == 2


# SetTaskStatus answers an empty object, which botocore reads alike from a list, a string
# or a number: only null is unreadable there.
@pytest.mark.parametrize(
    ("operation", "body"),
    [*(("PollForTask", body) for body in BODIES), ("SetTaskStatus", None)],
    ids=repr,
)
async def test_a_runner_call_answered_with_an_unreadable_body_is_tried_again(
    dp: LocalDataPipeline, client: Any, operation: str, body: object
) -> None:
    """An unreadable answer to a poll or a status is tried again: the task runs and is
    reported FINISHED, and run() returns."""
    dp.add_pipeline(worker_group="wg")
    dp.inject(Fault.answer(body), operation=operation)
    task_id = await run_one_task(client)
    assert dp.attempt(task_id).status.value == "FINISHED"


async def test_a_proxy_asking_for_credentials_is_a_mistake_named_as_such(
    dp: LocalDataPipeline, client: Any
) -> None:
    """HTTP 407 from a proxy is refused at once with a HeartbeatError that names the proxy,
    not retried until the lease runs out."""
    task_id = dp.add_task()
    dp.inject(Fault.error("ProxyAuthenticationRequired", status=407), task_id=task_id, times=None)
    with anyio.fail_after(5), pytest.raises(HeartbeatError, match="a proxy refused the call"):
        async with Heartbeat(client, task_id, interval=0.1, lease_timeout=60):
            pytest.fail("the body ran")
