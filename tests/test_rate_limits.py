"""The local Data Pipeline's call limits: the service's documented rates and bursts, a token
bucket per operation, ThrottlingException beyond them."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio
from botocore.exceptions import ClientError

from asyncheartbeat._cli import build_parser, main
from asyncheartbeat.testing import Call, EmulatorProcess, Fault, LocalDataPipeline, RateLimit
from asyncheartbeat.testing._emulator.options import rate_limits as emulator_rate_limits
from asyncheartbeat.testing._limits import (
    DOCUMENTED_RATE_LIMITS,
    RateLimiter,
    documented_rate_limits,
)
from asyncheartbeat.testing._validation import operation_names

from .conftest import client_config, make_client

HERE = Path(__file__).parent
THROTTLED = "error:ThrottlingException"
#: One token in 100 s: a bucket drained in a test stays empty for the rest of it.
SLOW = 0.01


def take(limiter: RateLimiter, operation: str, count: int) -> int:
    """Call ``operation`` ``count`` times now; how many calls the limiter let through."""
    now = anyio.current_time()
    return sum(limiter.allows(operation, now) for _ in range(count))


async def assert_throttled(call: Any) -> None:
    with pytest.raises(ClientError) as caught:
        await call
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"


# -- the token bucket, under virtual time ----------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("operation", "rate"),
    [
        ("ReportTaskProgress", 10),
        ("SetTaskStatus", 10),
        ("PollForTask", 2),
        ("ReportTaskRunnerHeartbeat", 1),
        ("DescribeObjects", 2),
        ("QueryObjects", 2),
        ("ListPipelines", 1),
        ("CreatePipeline", 1),
    ],
)
async def test_tokens_come_back_at_the_documented_rate(operation: str, rate: int) -> None:
    """After a burst of 100, one call per 1/rate seconds goes through, and no more."""
    limiter = RateLimiter(documented_rate_limits())
    assert take(limiter, operation, 101) == 100
    await anyio.sleep(1 / rate)
    assert take(limiter, operation, 5) == 1
    await anyio.sleep(1)
    assert take(limiter, operation, 50) == rate
    await anyio.sleep(0.9 / rate)
    assert take(limiter, operation, 5) == 0


@pytest.mark.anyio
async def test_an_idle_bucket_fills_up_to_its_burst_and_no_further() -> None:
    """After an hour without calls, exactly a burst goes through at once."""
    limiter = RateLimiter({"ReportTaskProgress": RateLimit(10, burst=100)})
    assert take(limiter, "ReportTaskProgress", 100) == 100
    await anyio.sleep(3600)
    assert take(limiter, "ReportTaskProgress", 1000) == 100


@pytest.mark.anyio
async def test_a_throttled_call_takes_no_token() -> None:
    """Calls refused while the bucket is empty do not delay the next token."""
    limiter = RateLimiter({"SetTaskStatus": RateLimit(1, burst=1)})
    assert take(limiter, "SetTaskStatus", 1) == 1
    await anyio.sleep(0.5)
    assert take(limiter, "SetTaskStatus", 10) == 0
    await anyio.sleep(0.5)
    assert take(limiter, "SetTaskStatus", 2) == 1


@pytest.mark.anyio
async def test_operations_not_named_are_not_limited() -> None:
    """A limiter holds back only the operations in its table."""
    limiter = RateLimiter({"PollForTask": RateLimit(1, burst=1)})
    assert take(limiter, "PollForTask", 3) == 1
    assert take(limiter, "ReportTaskProgress", 1000) == 1000


def test_the_documented_table_covers_every_operation() -> None:
    """The table names real operations; every other operation gets 1 a second, burst 100."""
    assert set(DOCUMENTED_RATE_LIMITS) <= operation_names()
    limits = documented_rate_limits()
    assert set(limits) == operation_names()
    assert {limit.burst for limit in limits.values()} == {100}
    assert limits["ReportTaskProgress"] == RateLimit(10, 100)
    assert limits["ListPipelines"] == limits["ActivatePipeline"] == RateLimit(1, 100)


# -- refusing what is not a limit -------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "burst", "error", "message"),
    [
        (0, 100, ValueError, "above 0, not 0"),
        (-2.5, 100, ValueError, "not -2.5"),
        (float("inf"), 100, ValueError, "finite number of calls per second above 0, not inf"),
        (float("nan"), 100, ValueError, "not nan"),
        ("10", 100, TypeError, "rate must be a number of calls per second, not str '10'"),
        (True, 100, TypeError, "not bool True"),
        (10, 0, ValueError, "burst must be at least 1 call, not 0"),
        (10, 2.5, TypeError, "burst must be a whole number of calls, not float 2.5"),
        (10, False, TypeError, "not bool False"),
    ],
)
def test_bad_rate_limits_are_refused_naming_the_value(
    rate: Any, burst: Any, error: type[Exception], message: str
) -> None:
    """A rate that is not a finite number above 0 or a burst below 1 call is refused."""
    with pytest.raises(error, match=re.escape(message)):
        RateLimit(rate, burst)


@pytest.mark.parametrize("endpoint", [LocalDataPipeline, EmulatorProcess])
def test_unknown_operations_are_refused_listing_the_valid_ones(endpoint: type[Any]) -> None:
    """A misspelt operation is refused before serving, with the real names alongside."""
    with pytest.raises(ValueError, match="unknown operation 'ReportProgress'") as caught:
        endpoint(rate_limits={"ReportProgress": RateLimit(1), "PollForTask": RateLimit(1)})
    assert "ReportTaskProgress, ReportTaskRunnerHeartbeat" in str(caught.value)
    with pytest.raises(TypeError, match="ReportTaskProgress must be a RateLimit, not int 10"):
        endpoint(rate_limits={"ReportTaskProgress": 10})


# -- over HTTP ------------------------------------------------------------------------------


@pytest_asyncio.fixture(params=["in this process", "in a process of its own"])
async def documented_dp(
    request: pytest.FixtureRequest,
) -> AsyncIterator[LocalDataPipeline | EmulatorProcess]:
    """A local Data Pipeline with the documented limits (`EmulatorProcess`: --rate-limits)."""
    endpoint = LocalDataPipeline if request.param == "in this process" else EmulatorProcess
    async with endpoint(rate_limits=True) as dp:
        yield dp


async def add_task(dp: LocalDataPipeline | EmulatorProcess) -> str:
    return await dp.add_task() if isinstance(dp, EmulatorProcess) else dp.add_task()


async def calls(dp: LocalDataPipeline | EmulatorProcess) -> list[Call]:
    return await dp.calls() if isinstance(dp, EmulatorProcess) else list(dp.calls)


@pytest.mark.asyncio
async def test_a_burst_of_100_reports_goes_through_then_throttling(
    documented_dp: LocalDataPipeline | EmulatorProcess,
) -> None:
    """With the documented limits, 100 reports at once are answered; beyond them, only
    what 10 a second refilled meanwhile, then ThrottlingException in the service's shape."""
    dp = documented_dp
    task_id = await add_task(dp)
    async with make_client(dp) as client:
        await client.list_pipelines()  # a client's first call is slow; its bucket is another
        for _ in range(100):
            assert (await client.report_task_progress(taskId=task_id))["canceled"] is False
        with anyio.fail_after(10):
            answered = 100
            while True:
                try:
                    await client.report_task_progress(taskId=task_id)
                except ClientError as error:
                    throttled = error
                    break
                answered += 1
    assert throttled.response["Error"] == {
        "Code": "ThrottlingException",
        "Message": "Rate exceeded",
    }
    assert throttled.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    reports = [call for call in await calls(dp) if call.operation == "ReportTaskProgress"]
    assert [call.outcome for call in reports] == ["answered"] * answered + [THROTTLED]
    refilled = 10 * (reports[-1].received_at - reports[0].received_at)
    assert answered - 100 <= refilled + 1e-6


@pytest.mark.asyncio
async def test_a_throttled_answer_says_when_the_next_token_comes() -> None:
    """x-amz-retry-after: the milliseconds until the bucket holds a token again."""
    limits = {"ReportTaskProgress": RateLimit(SLOW, burst=1)}  # a token each 100 s
    async with LocalDataPipeline(rate_limits=limits) as dp, make_client(dp) as client:
        task_id = dp.add_task()
        await client.report_task_progress(taskId=task_id)
        with pytest.raises(ClientError) as caught:
            await client.report_task_progress(taskId=task_id)
    first, throttled = dp.calls
    retry_after = int(caught.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-retry-after"])
    assert retry_after == math.ceil((100 - (throttled.received_at - first.received_at)) * 1000)


@pytest.mark.anyio
async def test_the_next_token_is_due_when_the_bucket_says() -> None:
    """next_token_in counts down to the token's arrival, and is 0 while tokens are left."""
    limiter = RateLimiter({"SetTaskStatus": RateLimit(2, burst=1)})
    assert limiter.next_token_in("SetTaskStatus", anyio.current_time()) == 0
    assert take(limiter, "SetTaskStatus", 2) == 1
    assert limiter.next_token_in("SetTaskStatus", anyio.current_time()) == pytest.approx(0.5)
    await anyio.sleep(0.2)
    assert limiter.next_token_in("SetTaskStatus", anyio.current_time()) == pytest.approx(0.3)
    await anyio.sleep(0.3)
    assert limiter.next_token_in("SetTaskStatus", anyio.current_time()) == 0
    assert take(limiter, "SetTaskStatus", 1) == 1


@pytest.mark.asyncio
async def test_operations_have_separate_buckets() -> None:
    """A throttled ReportTaskProgress leaves SetTaskStatus its own bucket, which empties alone."""
    limits = {"ReportTaskProgress": RateLimit(SLOW, burst=2), "SetTaskStatus": RateLimit(SLOW, 1)}
    async with LocalDataPipeline(rate_limits=limits) as dp, make_client(dp) as client:
        first, second = dp.add_task(), dp.add_task()
        await client.report_task_progress(taskId=first)
        await client.report_task_progress(taskId=first)
        await assert_throttled(client.report_task_progress(taskId=second))
        await client.set_task_status(taskId=first, taskStatus="FINISHED")
        await assert_throttled(client.set_task_status(taskId=second, taskStatus="FINISHED"))
    assert [(call.operation, call.outcome) for call in dp.calls] == [
        ("ReportTaskProgress", "answered"),
        ("ReportTaskProgress", "answered"),
        ("ReportTaskProgress", THROTTLED),
        ("SetTaskStatus", "answered"),
        ("SetTaskStatus", THROTTLED),
    ]


@pytest.mark.asyncio
async def test_a_mapping_limits_only_the_operations_it_names() -> None:
    """``{operation: RateLimit}`` throttles those operations; the others go unlimited."""
    limits = {"ReportTaskProgress": RateLimit(SLOW, burst=1)}
    async with LocalDataPipeline(rate_limits=limits) as dp, make_client(dp) as client:
        assert dict(dp.rate_limits) == limits
        task_id = dp.add_task()
        await client.report_task_progress(taskId=task_id)
        await assert_throttled(client.report_task_progress(taskId=task_id))
        for _ in range(3):
            await client.list_pipelines()
        await client.set_task_status(taskId=task_id, taskStatus="FINISHED")
    assert [call.outcome for call in dp.calls].count(THROTTLED) == 1


@pytest.mark.asyncio
async def test_no_limits_unless_asked() -> None:
    """By default, and with False, nothing is limited."""
    for rate_limits in (None, False):
        async with LocalDataPipeline(rate_limits=rate_limits) as dp:
            assert dict(dp.rate_limits) == {}
    async with LocalDataPipeline(rate_limits=True) as dp:
        assert dict(dp.rate_limits) == documented_rate_limits()


@pytest.mark.asyncio
async def test_throttling_comes_before_faults_and_validation() -> None:
    """Once the bucket is empty, a call meets ThrottlingException even where a fault or an
    invalid request would have answered it otherwise."""
    limits = {"ReportTaskProgress": RateLimit(SLOW, burst=1)}
    async with (
        LocalDataPipeline(rate_limits=limits) as dp,
        make_client(dp, client_config(parameter_validation=False)) as client,
    ):
        task_id = dp.add_task()
        await client.report_task_progress(taskId=task_id)
        dp.inject(Fault.hang(), task_id=task_id, times=None)
        with anyio.fail_after(5):
            await assert_throttled(client.report_task_progress(taskId=task_id))
        field = [{"key": "", "stringValue": "x"}]  # an empty key breaks the model's limits
        await assert_throttled(client.report_task_progress(taskId=task_id, fields=field))
    assert [call.outcome for call in dp.calls] == ["answered", THROTTLED, THROTTLED]
    assert dp.reports(task_id) == dp.calls


@pytest.mark.asyncio
async def test_an_emulator_process_passes_custom_limits_on() -> None:
    """EmulatorProcess(rate_limits={...}) throttles over HTTP in the child; its control
    moves are never limited."""
    limits = {"ReportTaskProgress": RateLimit(SLOW, burst=2), "PollForTask": RateLimit(0.5, 3)}
    async with EmulatorProcess(rate_limits=limits) as dp, make_client(dp) as client:
        task_ids = [await dp.add_task() for _ in range(3)]
        for task_id in task_ids[:2]:
            await client.report_task_progress(taskId=task_id)
        await assert_throttled(client.report_task_progress(taskId=task_ids[2]))
        assert [call.outcome for call in await dp.calls()] == ["answered", "answered", THROTTLED]


# -- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ([], False),
        (["--rate-limits"], True),
        (
            ["--rate-limit", "ReportTaskProgress=5/3", "--rate-limit", "PollForTask=0.5"],
            {"ReportTaskProgress": RateLimit(5, 3), "PollForTask": RateLimit(0.5, 100)},
        ),
        (
            ["--rate-limits", "--rate-limit", "ReportTaskProgress=5/3"],
            documented_rate_limits() | {"ReportTaskProgress": RateLimit(5, 3)},
        ),
    ],
)
def test_the_command_line_turns_limits_on(arguments: list[str], expected: object) -> None:
    """--rate-limits gives the documented limits; --rate-limit sets one operation's, over
    the documented one when both are given."""
    args = build_parser().parse_args(["emulator", *arguments])
    assert emulator_rate_limits(args) == expected


@pytest.mark.parametrize(
    ("rate_limit", "message"),
    [
        ("ReportTaskProgress", "'ReportTaskProgress' is not OPERATION=RATE[/BURST]"),
        ("ReportProgress=10", "unknown operation 'ReportProgress'; the operations are: "),
        ("ReportTaskProgress=fast", "'fast' is not a number of calls per second"),
        ("ReportTaskProgress=0", "rate must be a finite number of calls per second above 0"),
        ("ReportTaskProgress=inf/5", "above 0, not inf"),
        ("ReportTaskProgress=10/0", "burst must be at least 1 call, not 0"),
        ("ReportTaskProgress=10/1.5", "'1.5' is not a whole number of calls (the burst)"),
        ("ReportTaskProgress=10/", "'' is not a whole number of calls (the burst)"),
    ],
)
def test_bad_rate_limit_arguments_are_usage_errors(
    rate_limit: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each exits with status 2, naming --rate-limit and what is wrong with it."""
    with pytest.raises(SystemExit) as exited:
        main(["emulator", "--rate-limit", rate_limit])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "argument --rate-limit: " in error
    assert message in error


# -- the docs ---------------------------------------------------------------------------------


def test_the_docs_example_is_a_test_of_this_suite() -> None:
    """The call limits section's example is, verbatim, a test module that runs here."""
    page = (HERE.parent / "docs" / "local-data-pipeline.md").read_text()
    section = page.split("## The service's call limits", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert blocks == [(HERE / "test_call_limits_guide.py").read_text()]
