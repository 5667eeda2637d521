from typing import Any

import anyio
import pytest

from asyncheartbeat import CancelReason, Heartbeat, TaskStopped
from asyncheartbeat.testing import Fault, LocalDataPipeline


async def copy_job(client: Any, task_id: str, rows: int) -> None:  # the code under test
    async with Heartbeat(client, task_id, interval=0.1, lease_timeout=1) as hb:
        for n in range(rows):
            await anyio.sleep(0.01)
            hb.set_field("rowsCopied", str(n + 1))


@pytest.mark.asyncio
async def test_copy_job_stops_when_the_task_is_cancelled(
    local_datapipeline: LocalDataPipeline, datapipeline_client: Any
) -> None:
    dp = local_datapipeline
    task_id = dp.add_task()

    async def cancel_after_three_reports() -> None:
        await dp.wait_for_reports(task_id, 3)
        dp.cancel_task(task_id)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_after_three_reports)
            with pytest.raises(TaskStopped) as stopped:
                await copy_job(datapipeline_client, task_id, rows=1_000_000)
    assert stopped.value.reason is CancelReason.REQUESTED


@pytest.mark.asyncio
async def test_copy_job_rides_out_throttling(
    local_datapipeline: LocalDataPipeline, datapipeline_client: Any
) -> None:
    dp = local_datapipeline
    task_id = dp.add_task()
    dp.inject(Fault.error("ThrottlingException"), task_id=task_id, times=3)

    await copy_job(datapipeline_client, task_id, rows=30)

    assert dp.attempt(task_id).fields == {"rowsCopied": "30"}
