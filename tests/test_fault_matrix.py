"""Every fault the emulator can inject, at 10, 50 and 90 % of calls: the heartbeat stops the
work exactly when the calls' history says the lease ran out, and never otherwise."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from asyncheartbeat import CancelReason, Heartbeat, TaskStopped
from asyncheartbeat.testing import Fault, LocalDataPipeline

from .conftest import LATE, RecordingClient, client_config, make_client

pytestmark = pytest.mark.asyncio

# A lease of ten intervals: room for a report and the three attempts beside it, so that at
# 10 % of calls failing no lease runs out, and at 90 % some do.
INTERVAL, LEASE, CALL_TIMEOUT, RUN_FOR = 0.1, 1.0, 0.1, 1.5
# How late a verdict or a report may be on an event loop that 23 heartbeats, their client
# and the server share: a verdict is never early, and late by less than this.
JITTER = LATE

# Throttling is not among them: the service throttles an account, not a task, and the
# client slows down as a whole when throttled (tests/test_calls.py).
TRANSIENT = {
    "internal-error": Fault.error("InternalServiceError"),
    "dropped-connection": Fault.drop(),
    "late-answer": Fault.delay(2 * CALL_TIMEOUT),
    "hang": Fault.hang(),
    "malformed-body": Fault.malformed(),
}
RATES = (0.1, 0.5, 0.9)
FATAL = {
    "TaskNotFoundException": CancelReason.TASK_NOT_FOUND,
    "PipelineNotFoundException": CancelReason.PIPELINE_NOT_FOUND,
    "PipelineDeletedException": CancelReason.PIPELINE_DELETED,
    "InvalidRequestException": CancelReason.REJECTED,
    "AccessDeniedException": CancelReason.REJECTED,
}


@pytest.mark.local_datapipeline(seed=20261122)
async def test_the_fault_matrix(local_datapipeline: LocalDataPipeline) -> None:
    """Transient faults stop the work only when a lease passed without an answer, then
    within the lease; fatal answers stop it with their reason within one interval."""
    dp = local_datapipeline
    # A connection for every heartbeat: call_timeout counts the wait for a pooled one.
    async with make_client(dp, client_config(max_pool_connections=32)) as client:
        await run_matrix(dp, RecordingClient(client))


async def run_matrix(dp: LocalDataPipeline, client: RecordingClient) -> None:
    entered: dict[str, float] = {}
    ended: dict[str, tuple[CancelReason | None, float]] = {}
    fatal_injected: dict[str, float] = {}

    async def run(task_id: str) -> None:
        entered[task_id] = anyio.current_time()
        try:
            async with Heartbeat(
                client,
                task_id,
                interval=INTERVAL,
                lease_timeout=LEASE,
                call_timeout=CALL_TIMEOUT,
                raise_on_cancel=False,
            ) as hb:
                await anyio.sleep(RUN_FOR)
            reason = hb.cancel_reason
        except TaskStopped as refused:  # the acknowledgement itself never got through
            reason = refused.reason
        ended[task_id] = (reason, anyio.current_time())

    async def fail_fatally(task_id: str, code: str) -> None:
        with anyio.move_on_after(RUN_FOR):  # should the heartbeat end first, the checks say so
            await dp.wait_for_reports(task_id, 3)
            # For good: a refusal of the caller is final only once it repeats.
            dp.inject(Fault.error(code), task_id=task_id, times=None)
            fatal_injected[task_id] = anyio.current_time()

    # A warm client, as a runner's is: its first call pays for endpoint resolution.
    await client.report_task_progress(taskId=dp.add_task(), fields=[])

    transient_tasks, fatal_tasks = {}, {}
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for name, fault in TRANSIENT.items():
                for rate in RATES:
                    task_id = dp.add_task(f"{name}@{rate}")
                    dp.inject(fault, task_id=task_id, times=None, probability=rate)
                    transient_tasks[task_id] = rate
                    tg.start_soon(run, task_id)
            for code in FATAL:
                task_id = dp.add_task(f"fatal:{code}")
                fatal_tasks[task_id] = code
                tg.start_soon(run, task_id)
                tg.start_soon(fail_fatally, task_id, code)

    for task_id in transient_tasks:
        reason, ended_at = ended[task_id]
        answered = client.answered(task_id)
        lease_from = [entered[task_id], *answered]  # before the acknowledgement: from entering
        if reason is CancelReason.LEASE_LOST:
            silent_for = ended_at - lease_from[-1]
            assert LEASE <= silent_for <= LEASE + JITTER, (task_id, silent_for)
        else:
            assert reason is None, (task_id, reason)
            gaps = [b - a for a, b in zip(lease_from, [*answered, ended_at], strict=True)]
            assert max(gaps) < LEASE + JITTER, (task_id, max(gaps))
    # The seed makes the outcome repeatable: at 90 % of calls failing some leases run out,
    # at 10 % none do.
    lost = {t for t in transient_tasks if ended[t][0] is CancelReason.LEASE_LOST}
    assert any(transient_tasks[t] == 0.9 for t in lost)
    assert not [(t, client.sent[t]) for t in lost if transient_tasks[t] == 0.1]

    for task_id, code in fatal_tasks.items():
        reason, ended_at = ended[task_id]
        assert task_id in fatal_injected, f"{task_id} ended ({reason}) before its third report"
        assert reason is FATAL[code], (task_id, reason)
        # The next report meets the fatal answer, and nothing is sent after it. It leaves on
        # the next slot after the previous answer (a slow answer skips the slots it covered),
        # and the work stops as that answer comes back, however long the server took.
        last_sent = client.sent[task_id][-1][0]
        since = max(fatal_injected[task_id], client.answers_at[task_id][-1])
        assert last_sent - since <= INTERVAL + JITTER, task_id
        assert 0 <= ended_at - client.returns_at[task_id][-1] <= JITTER, task_id

    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("asyncheartbeat:")]
