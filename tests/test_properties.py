"""Properties that hold for any input: the schedule under any latencies and failures, and
validation that agrees with botocore's model and with the emulator."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from typing import Any

import anyio
import pytest
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asyncheartbeat import CancelReason, Heartbeat, Reporter, TaskStopped
from asyncheartbeat._fields import check_task_id
from asyncheartbeat._reporter import MAX_HEDGES
from asyncheartbeat.instrumentation import Event, EventKind
from asyncheartbeat.testing import MockClient, MockServiceError, ServiceError
from asyncheartbeat.testing._validation import validate_request

INTERVAL, LEASE, CALL_TIMEOUT, RUN_FOR = 10.0, 45.0, 8.0, 300.0
EPSILON = 1e-6

# One scripted call: how long the service takes, and what it answers.
calls = st.tuples(
    # Latencies off the 0.37 grid never tie with a deadline on the 10 s grid; most are
    # short, some run past the call timeout (and are hedged), a few past the lease.
    st.one_of(
        st.integers(0, 20), st.integers(0, 20), st.integers(21, 60), st.integers(61, 140)
    ).map(lambda k: k * 0.37 + 0.011),
    # Errors as often as answers, so that long streaks of failures come up.
    st.sampled_from(["ok"] * 10 + ["error"] * 10 + ["fatal"]),
)


@dataclasses.dataclass
class Call:
    start: float
    end: float = math.inf
    #: "ok", "error", "fatal", or "cut" (cancelled by the heartbeat before its answer).
    outcome: str = "cut"
    #: Sent beside a call in flight.
    hedge: bool = False


def run_scripted(script: list[tuple[float, str]], seed: int) -> dict[str, Any]:
    """Run a heartbeat against ``script`` for RUN_FOR virtual seconds; return what happened."""
    made: list[Call] = []
    hedged_at: list[float] = []
    outcome: dict[str, Any] = {"reason": None, "ended_at": None}

    def note_hedge(event: Event) -> None:
        if event.kind is EventKind.HEDGED:
            hedged_at.append(anyio.current_time())

    async def answer(task_id: str, fields: list[dict[str, str]]) -> Mapping[str, Any]:
        latency, kind = script[len(made)] if len(made) < len(script) else (0.011, "ok")
        call = Call(anyio.current_time())
        made.append(call)
        try:
            await anyio.sleep(latency)
        finally:
            call.end = anyio.current_time()
        call.outcome = kind
        if kind == "error":
            raise MockServiceError("InternalServiceError", status=500)
        if kind == "fatal":
            raise MockServiceError("TaskNotFoundException")
        return {"canceled": False}

    async def scenario() -> None:
        layer = Reporter(MockClient(answer), random_source=random.Random(seed), hooks=[note_hedge])
        try:
            async with Heartbeat(
                layer, "task-1", interval=INTERVAL, lease_timeout=LEASE, call_timeout=CALL_TIMEOUT
            ):
                await anyio.sleep(RUN_FOR)
        except TaskStopped as stopped:
            outcome["reason"] = stopped.reason
        outcome["ended_at"] = anyio.current_time()

    anyio.run(
        scenario,
        backend="trio",
        backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)},
    )
    for call in made:
        call.hedge = any(call.start == pytest.approx(t) for t in hedged_at)
    return {**outcome, "calls": made}


@settings(max_examples=100, deadline=None)
@given(script=st.lists(calls, max_size=40), seed=st.integers(0, 2**32))
# Found by hypothesis: an old hedge let go as a newer one answered took that answer from
# the report it was for, which then counted as failed.
@example(script=[(0.011, "ok"), (8.151, "ok"), (26.651, "ok"), (24.801, "ok")], seed=0)
def test_the_schedule_keeps_its_promises_under_any_latency_and_failure(
    script: list[tuple[float, str]], seed: int
) -> None:
    """No regular report sooner than an interval after an answered one; retries at most an
    interval apart; second attempts only beside a call unanswered for call_timeout, at most
    MAX_HEDGES of them; no call cut while its answer could count; a verdict exactly when the
    lease runs out, and only then."""
    run = run_scripted(script, seed)
    made: list[Call] = run["calls"]
    reason, ended_at = run["reason"], run["ended_at"]

    for n, call in enumerate(made):
        before = made[:n]
        in_flight = [c for c in before if c.end > call.start + EPSILON]
        regular = [c for c in before if not c.hedge]
        answered = [c for c in regular if c.outcome == "ok" and c.end <= call.start + EPSILON]
        assert len(in_flight) <= MAX_HEDGES, "too many attempts at once"
        if call.hedge:  # beside a regular call in flight, once it is overdue
            beside = [c for c in in_flight if not c.hedge]
            assert beside, "a hedge beside nothing"
            assert call.start - beside[-1].start >= CALL_TIMEOUT - EPSILON, "hedged too soon"
        elif (
            regular
            and regular[-1].outcome == "error"
            and regular[-1].end > max((c.end for c in answered), default=-math.inf)
        ):
            assert call.start - regular[-1].end <= INTERVAL + EPSILON, "retry later than the cap"
        elif answered:
            assert call.start >= max(c.start for c in answered) + INTERVAL - EPSILON, (
                "report too soon after an answer"
            )

    answers = sorted(c.start for c in made if c.outcome == "ok")
    superseded_at = [c.end for c in made if c.outcome == "ok"]
    for call in made:
        if call.outcome == "cut":  # only by the verdict, the end, or another call's answer
            assert call.end == pytest.approx(ended_at) or any(
                call.end == pytest.approx(t) for t in superseded_at
            ), "a call was cut while its answer could still count"

    lease_from = [0.0, *answers]  # before the acknowledgement, the lease counts from entering
    if reason is CancelReason.LEASE_LOST:
        assert ended_at == pytest.approx(lease_from[-1] + LEASE), "verdict off the lease"
    gaps = [b - a for a, b in zip(lease_from, [*answers, ended_at], strict=True)]
    if reason is None:
        assert all(gap < LEASE + EPSILON for gap in gaps), "lease ran out without a verdict"
    if reason is CancelReason.TASK_NOT_FOUND:
        fatal_end = min(c.end for c in made if c.outcome == "fatal")
        assert ended_at == pytest.approx(fatal_end), "a fatal answer must stop at once"


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
