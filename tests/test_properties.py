"""Properties that hold for any input: the schedule under any latencies and failures, and
validation that agrees with botocore's model and with the emulator."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import anyio
import pytest
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncheartbeat import CancelReason, Heartbeat, TaskCancelled, _timing
from asyncheartbeat._fields import check_task_id
from asyncheartbeat.testing import MockClient, MockServiceError, ServiceError
from asyncheartbeat.testing._validation import validate_request

INTERVAL, LEASE, CALL_TIMEOUT, RUN_FOR = 10.0, 45.0, 8.0, 300.0
EPSILON = 1e-6

# One scripted call: how long the service takes, and what it answers.
calls = st.tuples(
    # Latencies off the 0.37 grid never tie with a deadline on the 10 s grid; most are
    # short, some run past the call timeout.
    st.one_of(st.integers(0, 20), st.integers(0, 20), st.integers(21, 60)).map(
        lambda k: k * 0.37 + 0.011
    ),
    # Errors as often as answers, so that long streaks of failures come up.
    st.sampled_from(["ok"] * 10 + ["error"] * 10 + ["fatal"]),
)


class Answered(logging.Handler):
    """Collects the attempt numbers the heartbeat saw answered, from its DEBUG records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.attempts: set[int] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("report %d for task %r answered") and record.args:
            attempt = record.args[0]  # type: ignore[index]
            assert isinstance(attempt, int)
            self.attempts.add(attempt)


def run_scripted(script: list[tuple[float, str]], seed: int) -> dict[str, Any]:
    """Run a heartbeat against ``script`` for RUN_FOR virtual seconds; return what happened."""
    starts: list[float] = []
    ends: list[float] = []
    outcome: dict[str, Any] = {"reason": None, "ended_at": None}

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        index = len(starts)
        starts.append(anyio.current_time())
        latency, kind = script[index] if index < len(script) else (0.011, "ok")
        try:
            await anyio.sleep(latency)
        finally:
            ends.append(anyio.current_time())
        if kind == "error":
            raise MockServiceError("InternalServiceError", status=500)
        if kind == "fatal":
            raise MockServiceError("TaskNotFoundException")
        return {"canceled": False}

    async def scenario() -> None:
        client = MockClient(answer)
        try:
            async with Heartbeat(
                client, "task-1", interval=INTERVAL, lease_timeout=LEASE, call_timeout=CALL_TIMEOUT
            ):
                await anyio.sleep(RUN_FOR)
        except TaskCancelled as stopped:
            outcome["reason"] = stopped.reason
        outcome["ended_at"] = anyio.current_time()

    answered = Answered()
    logger = logging.getLogger("asyncheartbeat")
    logger.addHandler(answered)
    level, logger.level = logger.level, logging.DEBUG
    saved, _timing._random = _timing._random, random.Random(seed)
    try:
        anyio.run(
            scenario,
            backend="trio",
            backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)},
        )
    finally:
        _timing._random = saved
        logger.removeHandler(answered)
        logger.level = level
    successes = [starts[n - 1] for n in sorted(answered.attempts)]
    return {
        **outcome,
        "starts": starts,
        "ends": ends,
        "successes": successes,
        "answered": answered.attempts,
    }


@settings(max_examples=100, deadline=None)
@given(script=st.lists(calls, max_size=40), seed=st.integers(0, 2**32))
def test_the_schedule_keeps_its_promises_under_any_latency_and_failure(
    script: list[tuple[float, str]], seed: int
) -> None:
    """No overlap; no report sooner than an interval after an answer; retries at most an
    interval apart; a verdict exactly when the lease runs out, and only then."""
    run = run_scripted(script, seed)
    starts, ends, successes = run["starts"], run["ends"], run["successes"]

    for n in range(1, len(starts)):
        assert starts[n] >= ends[n - 1] - EPSILON, "two reports in flight"
        if n in run["answered"]:  # call n (0-based n-1) was answered
            assert starts[n] >= starts[n - 1] + INTERVAL - EPSILON, (
                "report too soon after an answer"
            )
        else:
            assert starts[n] - ends[n - 1] <= INTERVAL + EPSILON, "retry later than the cap"

    reason, ended_at = run["reason"], run["ended_at"]
    lease_from = [0.0, *successes]  # before the acknowledgement, the lease counts from entering
    if reason is CancelReason.LEASE_LOST:
        assert ended_at == pytest.approx(lease_from[-1] + LEASE), "verdict off the lease"
    gaps = [b - a for a, b in zip(lease_from, [*successes, ended_at], strict=True)]
    if reason is None:
        assert all(gap < LEASE + EPSILON for gap in gaps), "lease ran out without a verdict"
    if reason is CancelReason.TASK_NOT_FOUND:
        assert ended_at == pytest.approx(ends[-1]), "a fatal answer must stop at once"


# Every code point, lone surrogates included, with the edges of the allowed ranges weighted in.
characters = st.one_of(
    st.characters(codec=None, categories=None),
    st.sampled_from(
        [
            "\t",
            "\n",
            "\r",
            "\x1f",
            " ",
            "\ud7ff",
            "\ud800",
            "\udfff",
            "\ue000",
            "\ufffd",
            "\ufffe",
            "\U00010000",
            "\U0010ffff",
        ]
    ),
)


def allowed_by_the_service(text: str, longest: int) -> bool:
    """The model's rule, written out independently: lengths and code point ranges."""
    ranges = [(0x20, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF)]
    return 1 <= len(text) <= longest and all(
        c in "\t\n\r" or any(lo <= ord(c) <= hi for lo, hi in ranges) for c in text
    )


@settings(max_examples=120, deadline=None)
@given(
    text=st.one_of(
        st.text(characters, max_size=30), st.text(characters, min_size=2040, max_size=2060)
    )
)
def test_task_id_validation_agrees_with_the_model_and_the_emulator(text: str) -> None:
    """The library and the emulator accept exactly the task ids the model allows."""
    expected = allowed_by_the_service(text, 2048)
    try:
        check_task_id(text)
        library = True
    except ValueError:
        library = False
    try:
        validate_request("ReportTaskProgress", {"taskId": text})
        emulator = None
    except ServiceError as error:
        emulator = error.code
    assert library == expected
    assert emulator == (None if expected else "ValidationException")
