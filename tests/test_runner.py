"""TaskRunner against the local Data Pipeline: poll, run under a heartbeat, report, shut down."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
import pytest_asyncio

from asyncheartbeat import (
    CancelReason,
    FailTask,
    Heartbeat,
    HeartbeatError,
    PreconditionFalse,
    Task,
    TaskEvent,
    TaskRunner,
    TaskStopped,
)
from asyncheartbeat.testing import Call, Fault, LocalDataPipeline, RateLimit

from .conftest import EventLog, TaskEvents, client_config, make_client

pytestmark = [
    pytest.mark.asyncio,
    # Long polls and leases short enough for a test.
    pytest.mark.local_datapipeline(poll_timeout=0.2, ack_timeout=5, report_timeout=2),
]

WORKER_GROUP = "runners"
THROTTLED = "error:ThrottlingException"


@pytest_asyncio.fixture
async def client(dp: LocalDataPipeline) -> AsyncIterator[Any]:
    async with make_client(dp) as datapipeline:
        yield datapipeline


async def do_nothing(task: Task, hb: Heartbeat) -> None:
    """A handler whose job is done at once."""


def make_runner(
    client: Any, handler: Callable[[Task, Heartbeat], Awaitable[object]], **options: Any
) -> tuple[TaskRunner, TaskEvents]:
    events = TaskEvents()
    options = {"interval": 0.1, "lease_timeout": 1.0, "shutdown_grace": 1.0} | options
    runner = TaskRunner(
        client, worker_group=WORKER_GROUP, handler=handler, on_event=events, **options
    )
    return runner, events


async def until(runner: TaskRunner, condition: Callable[[], Awaitable[object]]) -> None:
    """Run ``runner`` until ``condition`` returns, then stop it and wait for it to end."""
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run)
            await condition()
            runner.stop()


def statuses(dp: LocalDataPipeline, task_id: str) -> list[str]:
    return [c.params["taskStatus"] for c in dp.calls if c.operation == "SetTaskStatus"
            and c.task_id == task_id]  # fmt: skip


async def test_a_handler_that_returns_finishes_its_task(dp: LocalDataPipeline, client: Any) -> None:
    """The handler gets the task and its heartbeat; returning reports FINISHED once."""
    dp.add_pipeline(worker_group=WORKER_GROUP, command="copy-rows")
    seen: list[Task] = []

    async def handle(task: Task, hb: Heartbeat) -> None:
        seen.append(task)
        hb.set_field("rowsCopied", "30")

    identity = {"document": "{}", "signature": "signed"}
    runner, events = make_runner(client, handle, hostname="runner-1", instance_identity=identity)
    await until(runner, lambda: events.wait_for("finished"))
    [task] = seen
    poll = next(c for c in dp.calls if c.operation == "PollForTask")
    assert poll.params == {"workerGroup": WORKER_GROUP, "hostname": "runner-1",
                           "instanceIdentity": identity}  # fmt: skip
    assert task.activity is not None
    assert task.activity.strings["command"] == "copy-rows"
    assert statuses(dp, task.task_id) == ["FINISHED"]
    attempt = dp.attempt(task.task_id)
    assert (attempt.status.value, attempt.fields["rowsCopied"]) == ("FINISHED", "30")
    assert [e.kind for e in events.seen] == ["started", "finished"]


async def test_a_handler_that_raises_fails_its_task_with_the_error(
    dp: LocalDataPipeline, client: Any
) -> None:
    """FAILED carries the exception's type, message and the end of its traceback."""
    dp.add_pipeline(worker_group=WORKER_GROUP)

    async def handle(task: Task, hb: Heartbeat) -> None:
        raise KeyError("row 7")

    runner, events = make_runner(client, handle)
    await until(runner, lambda: events.wait_for("failed"))
    [failed] = events.of("failed")
    attempt = dp.attempt(failed.task.task_id)
    assert attempt.status.value == "FAILED"
    assert (attempt.error_id, attempt.error_message) == ("KeyError", "'row 7'")
    assert attempt.error_stack_trace is not None
    assert attempt.error_stack_trace.startswith("Traceback")
    assert attempt.error_stack_trace.endswith("KeyError: 'row 7'\n")


async def test_a_handler_that_is_not_async_stops_the_runner_naming_it(
    dp: LocalDataPipeline, client: Any
) -> None:
    """A plain function as handler: run() raises TypeError naming it, and the task it was
    given is neither acknowledged nor reported FAILED (that would spend one of its retries
    on our mistake)."""
    dp.add_pipeline(worker_group=WORKER_GROUP)
    dp.add_pipeline(worker_group=WORKER_GROUP)
    calls: list[str] = []

    def copy_rows(task: Task, hb: Heartbeat) -> None:
        calls.append(task.task_id)

    runner, events = make_runner(client, copy_rows)  # type: ignore[arg-type]
    with anyio.fail_after(10), pytest.raises(TypeError) as raised:
        await runner.run()
    assert str(raised.value).startswith("handler must be an async function: ")
    assert "copy_rows(...) returned NoneType, not an awaitable" in str(raised.value)
    assert calls
    assert all(statuses(dp, task_id) == [] for task_id in calls)
    # Not even acknowledged: the service hands it out again within its 2 minutes.
    assert not [c for c in dp.calls if c.operation == "ReportTaskProgress" and c.task_id in calls]
    assert {e.kind for e in events.seen} == {"started", "cancelled"}


async def test_a_stop_of_another_heartbeat_inside_the_handler_fails_the_task(
    dp: LocalDataPipeline, client: Any
) -> None:
    """The handler's inner heartbeat, for another task, is stopped: the runner's own task
    is still its own, and is reported FAILED with that TaskStopped."""
    dp.add_pipeline(worker_group=WORKER_GROUP)
    other = dp.add_task()
    dp.forget_task(other)

    async def handle(task: Task, hb: Heartbeat) -> None:
        async with Heartbeat(client, other, interval=0.1, lease_timeout=1.0):
            pytest.fail("the other task is gone: its body never runs")

    runner, events = make_runner(client, handle)
    await until(runner, lambda: events.wait_for("failed"))
    [failed] = events.of("failed")
    assert dp.attempt(failed.task.task_id).error_id == "TaskStopped"


async def test_a_handler_raising_precondition_false_ends_its_task_false(
    dp: LocalDataPipeline, client: Any
) -> None:
    """PreconditionFalse reports FALSE, the status a precondition ends with."""
    dp.add_pipeline(worker_group=WORKER_GROUP)

    async def handle(task: Task, hb: Heartbeat) -> None:
        raise PreconditionFalse("the input is not there yet")

    runner, events = make_runner(client, handle)
    await until(runner, lambda: events.wait_for("false"))
    task_id = events.of("false")[0].task.task_id
    assert statuses(dp, task_id) == ["FALSE"]
    assert dp.attempt(task_id).status.value == "FALSE"


async def test_error_fields_are_cut_to_the_models_limits(
    dp: LocalDataPipeline, client: Any
) -> None:
    """FailTask sets the fields; an over-long stack trace keeps its end; Service_ is reserved."""
    dp.add_pipeline(worker_group=WORKER_GROUP)

    async def handle(task: Task, hb: Heartbeat) -> None:
        raise FailTask("bad input", error_id="Service_Bad", stack_trace="x" * 5000 + "END")

    runner, events = make_runner(client, handle)
    await until(runner, lambda: events.wait_for("failed"))
    attempt = dp.attempt(events.of("failed")[0].task.task_id)
    assert attempt.status.value == "FAILED"
    assert (attempt.error_id, attempt.error_message) == ("Task_Service_Bad", "bad input")
    assert attempt.error_stack_trace is not None
    assert len(attempt.error_stack_trace) == 1024
    assert attempt.error_stack_trace.endswith("xEND")


async def test_a_task_cancelled_while_its_handler_runs_is_not_reported(
    dp: LocalDataPipeline, client: Any
) -> None:
    """SetStatus CANCEL stops the handler; no SetTaskStatus follows."""
    dp.add_pipeline(worker_group=WORKER_GROUP)

    async def handle(task: Task, hb: Heartbeat) -> None:
        dp.cancel_task(task.task_id)
        await anyio.sleep_forever()

    runner, events = make_runner(client, handle)
    await until(runner, lambda: events.wait_for("cancelled"))
    [cancelled] = events.of("cancelled")
    assert cancelled.reason is CancelReason.REQUESTED
    assert statuses(dp, cancelled.task.task_id) == []
    assert dp.attempt(cancelled.task.task_id).status.value == "CANCELED"


def lose_lease(dp: LocalDataPipeline, task: Task) -> None:
    dp.inject(Fault.error("InternalServiceError"), task_id=task.task_id, times=None)


@pytest.mark.parametrize(
    ("take_away", "reason", "cleanup_raises"),
    [
        (lambda dp, task: dp.delete_pipeline(task.pipeline_id), CancelReason.PIPELINE_DELETED,
         None),
        (lambda dp, task: dp.forget_task(task.task_id), CancelReason.TASK_NOT_FOUND, None),
        (lose_lease, CancelReason.LEASE_LOST, None),
        (lambda dp, task: dp.cancel_task(task.task_id), CancelReason.REQUESTED, RuntimeError),
        (lambda dp, task: dp.forget_task(task.task_id), CancelReason.TASK_NOT_FOUND,
         PreconditionFalse),
        (lose_lease, CancelReason.LEASE_LOST, RuntimeError),
    ],
    ids=["pipeline-deleted", "task-reassigned", "lease-lost", "cancelled-cleanup-raises",
         "task-reassigned-cleanup-raises-false", "lease-lost-cleanup-raises"],
)  # fmt: skip
async def test_a_task_taken_away_under_its_handler_is_not_reported(
    dp: LocalDataPipeline,
    client: Any,
    take_away: Callable[[LocalDataPipeline, Task], object],
    reason: CancelReason,
    cleanup_raises: type[Exception] | None,
) -> None:
    """Pipeline deleted, task reassigned or cancelled, or no report through for the lease:
    the handler is stopped with that reason and nothing is reported, even when its cleanup
    raises afterwards (what is reported comes from what happened to the task)."""
    dp.add_pipeline(worker_group=WORKER_GROUP)

    async def handle(task: Task, hb: Heartbeat) -> None:
        try:
            take_away(dp, task)
            await anyio.sleep_forever()
        finally:
            if cleanup_raises is not None:
                raise cleanup_raises("cleanup failed")

    runner, events = make_runner(client, handle)
    await until(runner, lambda: events.wait_for("cancelled"))
    [cancelled] = events.of("cancelled")
    assert cancelled.reason is reason
    assert isinstance(cancelled.error, cleanup_raises or TaskStopped)
    assert statuses(dp, cancelled.task.task_id) == []
    assert not events.of("failed")


@pytest.mark.parametrize("cleanup_raises", [None, RuntimeError], ids=["quiet", "cleanup-raises"])
async def test_a_stalled_handler_fails_its_task_with_the_stall_error_id(
    dp: LocalDataPipeline, client: Any, cleanup_raises: type[Exception] | None
) -> None:
    """A handler silent for stall_timeout is stopped and its task, still ours, reported
    FAILED once: errorId TaskStalled, how long it was silent, and where it was waiting,
    even when its cleanup raises."""
    dp.add_pipeline(worker_group=WORKER_GROUP, maximum_retries=0)

    async def wait_for_an_answer_that_never_comes(task: Task, hb: Heartbeat) -> None:
        hb.set_field("step", "connect")
        try:
            await anyio.sleep_forever()
        finally:
            if cleanup_raises is not None:
                raise cleanup_raises("cleanup failed")

    runner, events = make_runner(client, wait_for_an_answer_that_never_comes, stall_timeout=0.3)
    await until(runner, lambda: events.wait_for("failed"))
    [failed] = events.of("failed")
    assert failed.reason is CancelReason.STALLED
    assert isinstance(failed.error, cleanup_raises or TaskStopped)
    assert statuses(dp, failed.task.task_id) == ["FAILED"]
    attempt = dp.attempt(failed.task.task_id)
    assert attempt.status.value == "FAILED"
    assert (attempt.error_id, attempt.error_message) == ("TaskStalled", "no progress for 0.3 s")
    assert "wait_for_an_answer_that_never_comes" in (attempt.error_stack_trace or "")
    assert attempt.fields == {"step": "connect"}
    assert [e.kind for e in events.seen] == ["started", "failed"]


async def test_a_malformed_task_object_fails_that_task_and_the_runner_goes_on(
    dp: LocalDataPipeline, client: Any
) -> None:
    """A task object without its pipelineId is reported FAILED by its taskId, one with no
    usable taskId is only logged, and the healthy task beside them runs to the end."""
    dp.add_pipeline(worker_group=WORKER_GROUP)
    release = anyio.Event()

    async def handle(task: Task, hb: Heartbeat) -> None:
        await release.wait()

    runner, events = make_runner(client, handle, concurrency=3)

    async def scenario() -> None:
        await events.wait_for("started")
        bad_id = dp.add_task()  # of another worker group: its retry is not polled here
        for body in (
            {"taskObject": {"taskId": 123}},
            {"taskObject": {"taskId": bad_id, "attemptId": "@a", "objects": {}}},
        ):
            dp.inject(Fault.answer(body), operation="PollForTask", times=1)  # fmt: skip
        with anyio.fail_after(5):
            await dp.wait_for_calls(lambda calls: statuses(dp, bad_id) == ["FAILED"])
        assert dp.attempt(bad_id).error_id == "MalformedTaskObject"
        assert "pipelineId" in (dp.attempt(bad_id).error_message or "")
        release.set()
        await events.wait_for("finished")

    await until(runner, scenario)
    assert [e.kind for e in events.seen] == ["started", "finished"]
    assert dp.attempt(events.seen[0].task.task_id).status.value == "FINISHED"
    assert runner.running == 0


async def test_a_poll_answer_that_is_not_a_json_object_is_a_failed_poll(
    dp: LocalDataPipeline, client: Any
) -> None:
    """A PollForTask answered with a JSON list does not stop the runner: it polls again and
    runs the task that is ready."""
    dp.inject(Fault.answer([]), operation="PollForTask", times=1)
    dp.add_pipeline(worker_group=WORKER_GROUP)
    runner, events = make_runner(client, do_nothing)
    await until(runner, lambda: events.wait_for("finished"))
    assert [c.outcome for c in dp.calls if c.operation == "PollForTask"][:2] == [
        "answer", "answered",
    ]  # fmt: skip


async def test_a_status_that_never_lands_is_not_called_finished(
    dp: LocalDataPipeline, client: Any
) -> None:
    """SetTaskStatus failing until the lease runs out: the event is "unreported", not
    "finished"."""
    dp.inject(Fault.error("InternalServiceError"), operation="SetTaskStatus", times=None)
    dp.add_pipeline(worker_group=WORKER_GROUP)
    runner, events = make_runner(client, do_nothing)
    await until(runner, lambda: events.wait_for("unreported"))
    assert not events.of("finished")
    assert dp.attempt(events.of("unreported")[0].task.task_id).status.value == "RUNNING"


@pytest.mark.local_datapipeline(poll_timeout=0.2, ack_timeout=5, report_timeout=1.0)
async def test_a_status_throttled_for_longer_than_a_lease_lands_while_the_reports_hold_it(
    dp: LocalDataPipeline, client: Any
) -> None:
    """SetTaskStatus throttled for two leases after the handler returned: the heartbeat
    keeps reporting, so the service never times the attempt out, and FINISHED lands; the
    throttled status is retried at the client's learned rate, not in bursts before each
    lease end."""
    dp.inject(Fault.error("ThrottlingException"), operation="SetTaskStatus", times=None)
    dp.add_pipeline(worker_group=WORKER_GROUP)
    runner, events = make_runner(client, do_nothing)

    def throttled_for_two_leases(calls: list[Call]) -> bool:
        at = [c.received_at for c in calls if c.operation == "SetTaskStatus"]
        return bool(at) and at[-1] - at[0] > 2.0

    async def throttle_then_answer() -> None:
        await dp.wait_for_calls(throttled_for_two_leases)
        task_id = events.of("started")[0].task.task_id
        assert dp.attempt(task_id).status.value == "RUNNING", "the reports held the lease"
        tries = [c for c in dp.calls if c.operation == "SetTaskStatus"]
        assert len(tries) <= 12, f"{len(tries)} tries in two leases"  # bursts made 30
        dp.clear_faults()
        await events.wait_for("finished")

    await until(runner, throttle_then_answer)
    task_id = events.of("finished")[0].task.task_id
    assert statuses(dp, task_id)[-1] == "FINISHED"
    assert dp.attempt(task_id).status.value == "FINISHED"
    assert not events.of("unreported")


async def test_a_status_still_throttled_when_the_runners_grace_ends_is_unreported(
    dp: LocalDataPipeline, client: Any
) -> None:
    """The runner stopped while a finished task's status is throttled: once its grace ends,
    the task's event is "unreported" (its work was done), not "cancelled"."""
    dp.inject(Fault.error("ThrottlingException"), operation="SetTaskStatus", times=None)
    dp.add_pipeline(worker_group=WORKER_GROUP)
    runner, events = make_runner(client, do_nothing, shutdown_grace=0.5)

    await until(runner, lambda: dp.wait_for_calls(
        lambda calls: any(c.operation == "SetTaskStatus" for c in calls)))  # fmt: skip
    assert [e.kind for e in events.seen] == ["started", "unreported"]
    assert dp.attempt(events.seen[0].task.task_id).status.value == "RUNNING"


async def test_no_more_tasks_run_at_once_than_concurrency_allows(
    dp: LocalDataPipeline, client: Any
) -> None:
    """Five ready tasks, two slots: two run at a time, and no poll is made while both run."""
    for _ in range(5):
        dp.add_pipeline(worker_group=WORKER_GROUP)
    running = most = polls_when_full = 0
    polls_while_full: list[int] = []

    def polls() -> int:
        return len([c for c in dp.calls if c.operation == "PollForTask"])

    async def handle(task: Task, hb: Heartbeat) -> None:
        nonlocal running, most, polls_when_full
        running += 1
        most = max(most, running)
        if running == 2:
            polls_when_full = polls()
        await anyio.sleep(0.2)
        if running == 2:  # the first of the two to end: both ran all along
            polls_while_full.append(polls() - polls_when_full)
        running -= 1

    runner, events = make_runner(client, handle, concurrency=2)
    await until(runner, lambda: events.wait_for("finished", 5))
    assert most == 2
    assert polls_while_full
    assert set(polls_while_full) == {0}


async def test_terminate_stops_polling_and_gives_running_tasks_their_grace(
    dp: LocalDataPipeline, client: Any
) -> None:
    """Told to terminate, run() returns: a task done within the grace is FINISHED, one that
    is not is cancelled unreported, for the service to reassign."""
    for _ in range(2):
        dp.add_pipeline(worker_group=WORKER_GROUP)

    async def handle(task: Task, hb: Heartbeat) -> None:
        if len(events.of("started")) == 2:
            dp.set_terminate(True)
        await anyio.sleep(0.2 if task is events.of("started")[0].task else 60)

    runner, events = make_runner(
        client, handle, concurrency=2, runner_heartbeat_interval=0.05, shutdown_grace=0.5
    )
    with anyio.fail_after(5):
        await runner.run()
    [finished] = events.of("finished")
    [cancelled] = events.of("cancelled")
    assert cancelled.reason is None
    assert statuses(dp, finished.task.task_id) == ["FINISHED"]
    assert statuses(dp, cancelled.task.task_id) == []
    assert dp.attempt(cancelled.task.task_id).status.value == "RUNNING"  # until its lease ends
    beat = next(c for c in dp.calls if c.operation == "ReportTaskRunnerHeartbeat")
    assert beat.params == {"taskrunnerId": runner.taskrunner_id, "workerGroup": WORKER_GROUP,
                           "hostname": runner.hostname}  # fmt: skip


@pytest.mark.parametrize("poll_timeout", [0.001])
async def test_a_flood_of_empty_polls_backs_off(poll_timeout: float) -> None:
    """Polls answered empty at once are spaced out with growing, jittered pauses."""
    async with (
        LocalDataPipeline(poll_timeout=poll_timeout) as dp,
        make_client(dp) as client,
    ):
        runner, _ = make_runner(client, do_nothing, max_poll_pause=1.0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run)
            await anyio.sleep(1)  # the runner's own pace is what is measured
            runner.stop()
        polls = [c for c in dp.calls if c.operation == "PollForTask"]
    assert 2 <= len(polls) <= 10  # back to back, they would be hundreds


async def test_poll_errors_back_off_and_the_runner_goes_on(
    dp: LocalDataPipeline, client: Any
) -> None:
    """Throttled polls are retried after a pause; the ready task is then run."""
    dp.inject(Fault.error("ThrottlingException"), operation="PollForTask", times=3)
    dp.add_pipeline(worker_group=WORKER_GROUP)
    runner, events = make_runner(client, do_nothing)
    await until(runner, lambda: events.wait_for("finished"))
    outcomes = [c.outcome for c in dp.calls if c.operation == "PollForTask"]
    assert outcomes[:4] == ["error:ThrottlingException"] * 3 + ["answered"]


async def test_a_refused_poll_stops_the_runner_with_the_reason(
    dp: LocalDataPipeline, client: Any
) -> None:
    """AccessDenied on PollForTask will not heal by retrying: run() raises, saying why."""
    dp.inject(Fault.error("AccessDeniedException"), operation="PollForTask", times=None)
    runner, _ = make_runner(client, do_nothing)
    with anyio.fail_after(5), pytest.raises(HeartbeatError, match="AccessDeniedException"):
        await runner.run()


async def test_set_task_status_is_retried_on_transient_errors(
    dp: LocalDataPipeline, client: Any
) -> None:
    """Two 500s on SetTaskStatus, then it lands: the task is FINISHED."""
    dp.inject(Fault.error("InternalServiceError"), operation="SetTaskStatus", times=2)
    dp.add_pipeline(worker_group=WORKER_GROUP)
    runner, events = make_runner(client, do_nothing)
    await until(runner, lambda: events.wait_for("finished"))
    task_id = events.of("finished")[0].task.task_id
    assert dp.attempt(task_id).status.value == "FINISHED"
    assert len([c for c in dp.calls if c.operation == "SetTaskStatus"]) == 3


async def test_stop_abandons_an_in_flight_long_poll() -> None:
    """stop() during a 60 s long poll returns from run() at once."""
    async with LocalDataPipeline(poll_timeout=60) as dp, make_client(dp) as client:
        runner, _ = make_runner(client, do_nothing)
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run)
            with anyio.fail_after(5):
                await dp.wait_for_calls(lambda calls: any(c.operation == "PollForTask"
                                                          for c in calls))  # fmt: skip
            stopped = anyio.current_time()
            runner.stop()
        assert anyio.current_time() - stopped < 0.5


async def test_a_failing_event_hook_does_not_stop_the_runner(
    dp: LocalDataPipeline, client: Any
) -> None:
    """An on_event hook that raises is logged; the task still finishes."""
    dp.add_pipeline(worker_group=WORKER_GROUP)
    finished = anyio.Event()

    def hook(event: TaskEvent) -> None:
        if event.kind == "finished":
            finished.set()
        raise RuntimeError("hook bug")

    runner = TaskRunner(
        client, worker_group=WORKER_GROUP, handler=do_nothing,
        interval=0.1, lease_timeout=1.0, on_event=hook,
    )  # fmt: skip
    await until(runner, finished.wait)


async def test_a_client_that_would_cut_the_long_poll_is_refused(dp: LocalDataPipeline) -> None:
    """botocore's 60 s read timeout is shorter than a 90 s long poll: refused, with the fix."""
    async with make_client(dp, client_config(read_timeout=60)) as short:
        with pytest.raises(ValueError, match=r"read_timeout \(60 s\).*client_config"):
            TaskRunner(short, worker_group=WORKER_GROUP, handler=do_nothing)
    assert TaskRunner.client_config().read_timeout > 90
    assert TaskRunner.client_config(read_timeout=120).read_timeout == 120


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"worker_group": ""}, "worker_group must not be empty"),
        ({"concurrency": 0}, "concurrency must be a whole number of at least 1"),
        ({"shutdown_grace": -1}, "shutdown_grace must be"),
        ({"interval": 10, "lease_timeout": 5}, "lease_timeout"),
        ({"hostname": "h\x00st"}, "hostname"),
        ({"stall_timeout": 0}, "stall_timeout must be"),
    ],
)
async def test_bad_options_are_refused_naming_them(
    client: Any, options: dict[str, Any], message: str
) -> None:
    """Each bad option raises ValueError naming it, before anything runs."""
    options = {"worker_group": WORKER_GROUP} | options
    with pytest.raises(ValueError, match=message):
        TaskRunner(client, handler=do_nothing, **options)


class Unprintable(Exception):
    """An exception whose str() and repr() raise."""

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __repr__(self) -> str:
        raise RuntimeError("repr")


async def test_an_exception_that_cannot_be_printed_fails_its_task_with_a_placeholder(
    dp: LocalDataPipeline, client: Any
) -> None:
    """A handler raising an exception whose str() and repr() raise: its task is FAILED with
    a placeholder message, and the runner goes on to the next task."""
    dp.add_pipeline(worker_group=WORKER_GROUP, maximum_retries=0)
    dp.add_pipeline(worker_group=WORKER_GROUP)

    async def handle(task: Task, hb: Heartbeat) -> None:
        if len(events.of("started")) == 1:
            raise Unprintable

    runner, events = make_runner(client, handle)
    await until(runner, lambda: events.wait_for("finished"))
    [failed] = events.of("failed")
    attempt = dp.attempt(failed.task.task_id)
    assert (attempt.status.value, attempt.error_id) == ("FAILED", "Unprintable")
    assert attempt.error_message == "<Unprintable: its str() raised>"


@pytest.mark.parametrize("exiting", [SystemExit, KeyboardInterrupt, GeneratorExit])
async def test_a_handler_raising_system_exit_shuts_the_runner_down_gracefully(
    dp: LocalDataPipeline, client: Any, exiting: type[BaseException]
) -> None:
    """SystemExit, KeyboardInterrupt or GeneratorExit from one handler: the task beside it
    gets its shutdown grace and is reported FINISHED, the culprit's task gets an event and
    no status, and run() then raises the culprit's exception itself, not a group."""
    for _ in range(2):
        dp.add_pipeline(worker_group=WORKER_GROUP)
    sibling_started = anyio.Event()

    async def handle(task: Task, hb: Heartbeat) -> None:
        if len(events.of("started")) == 1:
            await sibling_started.wait()
            raise exiting("from the handler")
        sibling_started.set()
        await anyio.sleep(0.3)  # still running when the culprit raises

    runner, events = make_runner(client, handle, concurrency=2, shutdown_grace=5.0)
    with anyio.fail_after(10), pytest.raises(exiting) as raised:
        await runner.run()
    assert type(raised.value) is exiting
    culprit, sibling = (e.task for e in events.of("started"))
    [cancelled] = events.of("cancelled")
    assert (cancelled.task, cancelled.error) == (culprit, raised.value)
    assert [e.task for e in events.of("finished")] == [sibling]
    assert statuses(dp, sibling.task_id) == ["FINISHED"]
    assert statuses(dp, culprit.task_id) == []


async def test_run_raises_a_plain_error_when_its_calls_raise(dp: LocalDataPipeline) -> None:
    """A client closed before run(): the poll and the runner heartbeat both raise, and run()
    raises one HeartbeatError, not an exception group."""
    async with make_client(dp) as client:
        pass
    runner, _ = make_runner(client, do_nothing)
    with anyio.fail_after(5), pytest.raises(HeartbeatError, match="closed client"):
        await runner.run()


async def test_a_status_call_that_raises_ends_run_with_a_plain_error(
    dp: LocalDataPipeline,
) -> None:
    """The client closed under a handler: its status cannot be sent; the event is
    "unreported" and run() raises a plain HeartbeatError."""
    dp.add_pipeline(worker_group=WORKER_GROUP)
    async with make_client(dp) as client:

        async def close_then_return(task: Task, hb: Heartbeat) -> None:
            await client.__aexit__(None, None, None)

        runner, events = make_runner(client, close_then_return)
        with anyio.fail_after(10), pytest.raises(HeartbeatError, match="closed client"):
            await runner.run()
    assert [e.kind for e in events.seen] == ["started", "unreported"]


async def test_a_duplicate_handout_of_a_running_task_is_acknowledged_not_started_again(
    dp: LocalDataPipeline, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A poll hands out, twice, a task already running here: no second handler starts, the
    running copy's heartbeat reports at once (well before its interval), the duplicate is
    logged once, and the task is FINISHED once."""
    dp.add_pipeline(worker_group=WORKER_GROUP)
    release = anyio.Event()

    def duplicates_answered() -> int:
        return len([c for c in dp.calls if c.operation == "PollForTask" and c.outcome == "answer"])

    async def handle(task: Task, hb: Heartbeat) -> None:
        again = {"taskId": task.task_id, "pipelineId": task.pipeline_id,
                 "attemptId": task.attempt_id, "objects": {}}  # fmt: skip
        reports = len(dp.reports(task.task_id))
        dp.inject(Fault.answer({"taskObject": again}), operation="PollForTask", times=2)
        with anyio.fail_after(4):  # the interval is 5 s: only an acknowledgement is sooner
            await dp.wait_for_calls(lambda calls: duplicates_answered() == 2)
            await dp.wait_for_reports(task.task_id, reports + 1)
        await release.wait()

    runner, events = make_runner(client, handle, concurrency=2, interval=5.0, lease_timeout=20)

    async def scenario() -> None:
        await events.wait_for("started")
        with anyio.fail_after(5):
            await dp.wait_for_calls(lambda calls: duplicates_answered() == 2)
        release.set()
        await events.wait_for("finished")

    await until(runner, scenario)
    [started] = events.of("started")
    assert [e.kind for e in events.seen] == ["started", "finished"]
    assert statuses(dp, started.task.task_id) == ["FINISHED"]
    logged = [r for r in caplog.records if getattr(r, "hb_event", None) == "task_duplicate"]
    assert [getattr(r, "hb_task_id", None) for r in logged] == [started.task.task_id]


async def test_a_task_lost_to_a_blocked_loop_is_named_lease_lost_and_not_reported(
    dp: LocalDataPipeline, client: Any, events: EventLog
) -> None:
    """A handler that blocks the event loop past its lease, then returns: its lease ran
    out, so no SetTaskStatus is sent, and the event is "cancelled" with LEASE_LOST (not
    "unreported", and no "SetTaskStatus failed" line for a call never sent)."""
    dp.add_pipeline(worker_group=WORKER_GROUP)

    async def block_the_loop(task: Task, hb: Heartbeat) -> None:
        time.sleep(1.5)  # the lease is 1 s  # noqa: ASYNC251

    runner, tasks = make_runner(client, block_the_loop)
    await until(runner, lambda: tasks.wait_for("cancelled"))
    [lost] = tasks.of("cancelled")
    assert lost.reason is CancelReason.LEASE_LOST
    assert [e.kind for e in tasks.seen] == ["started", "cancelled"]
    assert statuses(dp, lost.task.task_id) == []
    assert not [e for e in events if e.operation == "SetTaskStatus"], "no call, no failure"


@pytest.mark.slow
async def test_a_fleet_of_runners_inside_one_accounts_limits_reports_every_task() -> None:
    """Three runners on clients of their own share an account whose limits are the
    documented ones scaled down (polls 2/s, statuses 1/s, runner heartbeats 0.5/s): all 16
    tasks end FINISHED with their one status landed, none is reported twice or left
    unreported, and every runner gets tasks (throttled polls back off without starving)."""
    limits = {
        "PollForTask": RateLimit(2, burst=2),
        "SetTaskStatus": RateLimit(1, burst=1),
        "ReportTaskRunnerHeartbeat": RateLimit(0.5, burst=1),
        "ReportTaskProgress": RateLimit(10, burst=10),
    }
    async with LocalDataPipeline(
        rate_limits=limits, poll_timeout=0.2, ack_timeout=10, report_timeout=10
    ) as dp:
        for _ in range(16):
            dp.add_pipeline(worker_group=WORKER_GROUP)
        ran: dict[str, list[str]] = {}

        async def runner_of(name: str, runners: list[TaskRunner]) -> None:
            async def handle(task: Task, hb: Heartbeat) -> None:
                ran.setdefault(name, []).append(task.task_id)
                await anyio.sleep(0.3)

            async with make_client(dp) as client:
                runner, _ = make_runner(
                    client, handle, concurrency=4, interval=1, lease_timeout=10,
                    runner_heartbeat_interval=1, max_poll_pause=1,
                )  # fmt: skip
                runners.append(runner)
                await runner.run()

        def landed(task_id: str) -> list[str]:
            return [c.params["taskStatus"] for c in dp.calls if c.operation == "SetTaskStatus"
                    and c.task_id == task_id and c.outcome == "answered"]  # fmt: skip

        def all_reported() -> bool:
            task_ids = [t for ids in ran.values() for t in ids]
            return len(task_ids) >= 16 and all(landed(t) for t in task_ids)

        runners: list[TaskRunner] = []
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for k in range(3):
                    tg.start_soon(runner_of, f"runner-{k}", runners)
                await dp.wait_for_calls(lambda _: all_reported())
                for runner in runners:
                    runner.stop()
        task_ids = [t for ids in ran.values() for t in ids]
        throttled = {
            op
            for op in limits
            if any(c.operation == op and c.outcome == THROTTLED for c in dp.calls)
        }
    assert len(task_ids) == len(set(task_ids)) == 16
    assert all(landed(t) == ["FINISHED"] for t in task_ids), [landed(t) for t in task_ids]
    assert len(ran) == 3, {name: len(ids) for name, ids in ran.items()}
    assert {"PollForTask", "SetTaskStatus"} <= throttled, "the limits were reached"
