"""An answer botocore cannot read (a JSON null, a list, a string) is the service's malformed
answer wherever it comes, retried like any bad answer, never taken for a mistake in the
program. Over real HTTP against the local Data Pipeline."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from asyncheartbeat import Heartbeat
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
