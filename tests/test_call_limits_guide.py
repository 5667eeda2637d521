from typing import Any

import anyio
import pytest

from asyncheartbeat import Heartbeat
from asyncheartbeat.testing import LocalDataPipeline, RateLimit

TASKS = 10
INTERVAL = 0.5  # 10 tasks reporting every 0.5 s: 20 reports a second


async def copy_job(client: Any, task_id: str) -> None:  # the code under test
    async with Heartbeat(client, task_id, interval=INTERVAL, lease_timeout=2) as hb:
        for n in range(15):
            await anyio.sleep(0.05)
            hb.set_field("rowsCopied", str(n + 1))


@pytest.mark.asyncio
@pytest.mark.local_datapipeline(rate_limits={"ReportTaskProgress": RateLimit(rate=20, burst=20)})
async def test_the_fleet_fits_in_twenty_reports_a_second(
    local_datapipeline: LocalDataPipeline, datapipeline_client: Any
) -> None:
    dp = local_datapipeline
    task_ids = [dp.add_task() for _ in range(TASKS)]

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for task_id in task_ids:
                tg.start_soon(copy_job, datapipeline_client, task_id)

    assert not [call for call in dp.calls if call.outcome == "error:ThrottlingException"]
    assert all(dp.attempt(task_id).fields == {"rowsCopied": "15"} for task_id in task_ids)
