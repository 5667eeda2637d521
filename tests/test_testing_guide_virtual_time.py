from collections.abc import Mapping
from typing import Any

import anyio
import pytest
import trio.testing

from asyncheartbeat import CancelReason, Heartbeat, TaskStopped
from asyncheartbeat.testing import MockClient, MockServiceError


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}


@pytest.mark.anyio
async def test_the_lease_is_lost_after_five_minutes_of_failures() -> None:
    def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        if len(client.calls) > 1:  # acknowledge, then fail every report
            raise MockServiceError("InternalServiceError", status=500)
        return {"canceled": False}

    client = MockClient(answer)
    with pytest.raises(TaskStopped) as stopped:
        async with Heartbeat(client, "task-1"):  # the defaults: 60 s interval, 300 s lease
            await anyio.sleep_forever()
    assert stopped.value.reason is CancelReason.LEASE_LOST
    assert anyio.current_time() == pytest.approx(300)
