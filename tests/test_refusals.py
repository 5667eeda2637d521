"""What the service says of the caller: a refusal (credentials, signature, permissions) is
final only once it repeats, as credentials refresh and clocks skew; a throttled answer's
x-amz-retry-after is waited out. Over real HTTP against the local Data Pipeline."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from asyncheartbeat import CancelReason, Heartbeat, TaskStopped
from asyncheartbeat.instrumentation import EventKind
from asyncheartbeat.testing import Fault, LocalDataPipeline, RateLimit

from .conftest import LATE, EventLog, make_client, run_one_task

pytestmark = pytest.mark.asyncio

INTERVAL, LEASE = 0.1, 0.6
REFUSALS = [
    ("ExpiredTokenException", 400),
    ("InvalidSignatureException", 403),
    ("AccessDeniedException", 400),
]


@pytest.mark.parametrize(("code", "status"), REFUSALS)
async def test_one_refused_report_is_retried_and_the_lease_kept(
    dp: LocalDataPipeline, client: Any, events: EventLog, code: str, status: int
) -> None:
    """One refused report is retried like a transient failure; the work goes on."""
    task_id = dp.add_task()
    with anyio.fail_after(5):
        async with Heartbeat(client, task_id, interval=INTERVAL, lease_timeout=LEASE) as hb:
            dp.inject(Fault.error(code, status=status), task_id=task_id)
            await hb.beat()
    assert hb.cancel_reason is None
    assert [e for e in events.of(EventKind.RETRIED) if code in e.description]


@pytest.mark.parametrize(("code", "status"), REFUSALS)
async def test_a_refusal_that_repeats_stops_the_work_as_rejected(
    dp: LocalDataPipeline, client: Any, code: str, status: int
) -> None:
    """The same refusal on the retry is final: REJECTED, naming the code, well before the
    lease runs out."""
    task_id = dp.add_task()
    with anyio.fail_after(5), pytest.raises(TaskStopped) as caught:
        async with Heartbeat(client, task_id, interval=0.1, lease_timeout=60):
            dp.inject(Fault.error(code, status=status), task_id=task_id, times=None)
            await anyio.sleep_forever()
    assert caught.value.reason is CancelReason.REJECTED
    assert code in str(caught.value)


@pytest.mark.parametrize("operation", ["PollForTask", "SetTaskStatus"])
async def test_a_runner_call_refused_once_is_tried_again(
    dp: LocalDataPipeline, client: Any, operation: str
) -> None:
    """A poll refused once is polled again, and a SetTaskStatus refused once retried: the
    task runs and is reported FINISHED."""
    dp.add_pipeline(worker_group="wg")
    dp.inject(Fault.error("ExpiredTokenException"), operation=operation)
    task_id = await run_one_task(client)
    assert dp.attempt(task_id).status.value == "FINISHED"


EXPIRED = "error:ExpiredTokenException"


async def refuse_for_a_moment(
    dp: LocalDataPipeline, operation: str, task_id: str | None, blip: float
) -> None:
    """Refuse every ``operation`` call (of ``task_id``) from now until ``blip`` seconds after
    the first was refused: a credential being refreshed, a clock being corrected."""
    dp.inject(Fault.expired_token(), operation=operation, task_id=task_id, times=None)
    await dp.wait_for_calls(
        lambda calls: any(c.operation == operation and c.outcome == EXPIRED for c in calls)
    )
    await anyio.sleep(blip)
    dp.clear_faults()


async def test_a_report_refused_again_within_a_blip_is_not_final(
    dp: LocalDataPipeline, client: Any
) -> None:
    """Every report refused for 0.3 s: the retry waits long enough for the
    credentials to come right, so the refusal is not taken as final and the lease is kept."""
    task_id = dp.add_task()
    with anyio.fail_after(10):
        async with Heartbeat(client, task_id, interval=0.5, lease_timeout=3) as hb:
            await refuse_for_a_moment(dp, "ReportTaskProgress", task_id, 0.3)
            await dp.wait_for_calls(lambda calls: len(dp.reports(task_id)) >= 3)
    assert hb.cancel_reason is None
    assert [c.outcome for c in dp.calls if c.operation == "ReportTaskProgress"].count(EXPIRED) == 1


# A status has a quarter of its lease's time left to wait (0.25 s here), a poll a second.
@pytest.mark.parametrize(("operation", "blip"), [("PollForTask", 0.3), ("SetTaskStatus", 0.1)])
async def test_a_runner_call_refused_again_within_a_blip_is_tried_later(
    dp: LocalDataPipeline, client: Any, operation: str, blip: float
) -> None:
    """Every poll, or every SetTaskStatus, refused for a moment: the next try comes after
    it, and the task runs and is reported FINISHED."""
    dp.add_pipeline(worker_group="wg")
    async with anyio.create_task_group() as tg:
        tg.start_soon(refuse_for_a_moment, dp, operation, None, blip)
        task_id = await run_one_task(client)
    assert dp.attempt(task_id).status.value == "FINISHED"


async def test_a_throttled_report_waits_as_long_as_the_service_says() -> None:
    """A throttled answer's x-amz-retry-after (1.5 s here, where the client's own rate would
    try again sooner) holds the report back that long, and no longer than needed."""
    limits = {"ReportTaskProgress": RateLimit(1 / 1.5, burst=1)}  # a token each 1.5 s
    async with LocalDataPipeline(rate_limits=limits) as dp, make_client(dp) as client:
        task_id = dp.add_task()
        with anyio.fail_after(10):
            async with Heartbeat(client, task_id, interval=0.2, lease_timeout=10) as hb:
                await hb.beat()  # the acknowledgement took the token: this one is throttled
    reports = [c for c in dp.calls if c.operation == "ReportTaskProgress"]
    first_throttled = next(
        i for i, c in enumerate(reports) if c.outcome == "error:ThrottlingException"
    )
    waited = reports[first_throttled + 1].received_at - reports[first_throttled].received_at
    assert 1.0 <= waited < 1.5 + LATE
