"""A client's calls: every call to the service goes through its one `Calls`.

Reports, polls, statuses and a runner's own heartbeat share the client's capacity, and the
service judges the client (its rate limits are per account), so the rules for calling live
here, once:

- A call is never abandoned while its answer can still count: it is bounded by the
  caller's deadline (for a report, the end of the lease), not by a guess at latency. A call
  cut short is thrown away after the service received it, and aiohttp closes its
  connection, so the retry pays for a new one: cutting slow calls makes a slow client slower.
- Admission by measured capacity (`Admission`), served by urgency (`TurnQueue`).
- Throttling slows the client's rate for that operation (`OperationRate`), not each caller.
- Transient failures are retried with capped exponential backoff and full jitter until the
  deadline; final ones end the request with a reason; programming mistakes (a sync client,
  a closed client, a client on the wrong event loop) raise `HeartbeatError` at once.
- Every outcome is an `instrumentation.Event` for the hooks.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from asyncheartbeat._clock import current_time
from asyncheartbeat._datapipeline import pool_size
from asyncheartbeat._errors import HeartbeatError
from asyncheartbeat._log import fields
from asyncheartbeat._service import Answered, Cut, Final, LeaseService, Outcome, Transient
from asyncheartbeat._timing import jittered_backoff
from asyncheartbeat.instrumentation import Event, EventKind, Hook, get_hooks

from ._admission import Admission
from ._latency import Latency
from ._overload import OverloadWindow
from ._pacing import LEASE_MARGIN, PACING_HEADROOM
from ._throttle import OperationRate

if TYPE_CHECKING:
    from ._lease import Lease

#: A call throttled this many times in a row waits for its next turn behind the others.
REPEATED_THROTTLES = 3
#: What an operation other than reports is taken to have been sent at when first throttled.
UNKNOWN_RATE = 2.0

logger = logging.getLogger("asyncheartbeat")

#: A call's parameters, or a function that gives them afresh for each attempt.
Params = Mapping[str, Any] | Callable[[], Mapping[str, Any]]
#: Told of each attempt: its cancel scope and the time, as it goes on the wire; None and
#: the time, as it ends.
Watch = Callable[[anyio.CancelScope | None, float], object]

_NO_TURN = "the deadline passed before the call could be sent"

#: A refused call is tried again no sooner than this, in seconds (or a quarter of the time
#: it has left, if less): a credential refreshed or a clock corrected meanwhile is then
#: answered, where a retry a few ms later would meet the same refusal and make it final. A
#: key wrong for good is final after about this long.
REFUSAL_RECHECK = 1.0


def refusal_recheck(result: Outcome, time_left: float) -> float:
    """How long to wait at least before retrying ``result``: 0 unless it was a refusal."""
    if not isinstance(result, Transient) or result.refusal is None:
        return 0.0
    return max(0.0, min(REFUSAL_RECHECK, time_left / 4))


def confirm_refusal(
    result: Transient | Final, before: Transient | Final | None
) -> Transient | Final:
    """A refusal of the caller is a blip the first time (credentials refresh, clocks skew):
    it is final only when the attempt before it, of the same request, was refused too."""
    if not isinstance(result, Transient) or result.refusal is None:
        return result
    if not (isinstance(before, Transient) and before.refusal is not None):
        return result
    return Final(result.refusal, f"{result.description} (refused again)", result.error)


class Load:
    """The heartbeats a client reports for: how many, the reports/s they ask for together,
    and the reports/s that would keep all their leases (one per lease each)."""

    __slots__ = ("asked_per_second", "heartbeats", "needed_per_second")

    def __init__(self) -> None:
        self.heartbeats = 0
        self.asked_per_second = 0.0
        self.needed_per_second = 0.0

    def add(self, interval: float, lease_timeout: float, sign: int = 1) -> None:
        self.heartbeats += sign
        self.asked_per_second += sign / interval
        self.needed_per_second += sign / lease_timeout


class Calls:
    """One client's calls: shared capacity, urgency, throttling, retries and events."""

    def __init__(
        self, service: LeaseService, hooks: tuple[Hook, ...], random_source: random.Random
    ) -> None:
        self.service = service
        self.hooks = hooks
        self.random = random_source
        self.admission = Admission(pool_size(service.client))
        self.latency = Latency()
        self.load = Load()
        self.rates: dict[str, OperationRate] = {}
        self.answered_once = False
        #: The last failure of each long-call operation (a poll), while none was answered since:
        #: a refusal after a refusal is final.
        self.long_call_failures: dict[str, Transient | Final] = {}
        self.overload = OverloadWindow(
            self._overloaded, lambda: (self.load.heartbeats, self.load.asked_per_second)
        )

    async def call(
        self,
        operation: str,
        params: Params,
        *,
        deadline: float | Callable[[], float],
        task_id: str | None = None,
        lease: Lease | None = None,
        backoff_start: float = 1.0,
        backoff_cap: float = 30.0,
        watch: Watch | None = None,
    ) -> Outcome:
        """Call ``operation`` until it is answered, fails for good, or ``deadline`` passes
        (a time, or a function that tells it, for a deadline that may move on).

        Transient failures are retried after a jittered backoff that starts at
        ``backoff_start`` seconds and doubles up to ``backoff_cap``; throttled calls wait
        for the client's next turn instead. A `Transient` returned is the last failure.
        ``lease``: the lease a report renews, whose share left each answer tells.

        Raises:
            HeartbeatError: A programming mistake: a closed or sync client, aiobotocore on
                trio, a TypeError, AttributeError or RuntimeError from the call.
        """
        deadline_now = deadline if callable(deadline) else lambda: deadline
        failures = 0
        last: Transient | None = None
        failed: Transient | Final | None = None  # the attempt before, if it failed
        limit = deadline_now()
        # The first attempt reads no clock here: `attempt` checks the deadline as it sends.
        while failures == 0 or current_time() < (limit := deadline_now()):
            outcome = await self.attempt(
                operation, params, deadline=limit, task_id=task_id, lease=lease, watch=watch,
                attempt=failures + 1,
            )  # fmt: skip
            if isinstance(outcome, Answered):
                return outcome
            failed = confirm_refusal(outcome, failed)
            if isinstance(failed, Final) or failed.cut is Cut.SUPERSEDED:
                return failed
            result = failed
            failures += 1
            now, limit = current_time(), deadline_now()
            # A call cut short by the deadline says nothing new about why calls fail.
            if not (result.cut is Cut.DEADLINE and now >= limit and last is not None):
                last = result
            delay = max(
                jittered_backoff(failures, start=backoff_start, cap=backoff_cap, rng=self.random),
                refusal_recheck(result, limit - now),
            )
            kind = EventKind.RETRIED if now + delay < limit else EventKind.FAILED
            if now < limit:
                self.emit(
                    Event(
                        kind, operation, task_id, failures, description=result.description,
                        error=result.error, delay=delay if kind is EventKind.RETRIED else None,
                    )
                )  # fmt: skip
            await anyio.sleep_until(min(now + delay, limit))
        return last or Transient(_NO_TURN, cut=Cut.DEADLINE)

    async def attempt(
        self,
        operation: str,
        params: Params,
        *,
        deadline: float,
        task_id: str | None = None,
        lease: Lease | None = None,
        watch: Watch | None = None,
        attempt: int = 1,
    ) -> Outcome:
        """Send ``operation`` once, when the client's rate and capacity allow, and wait for
        its answer until ``deadline``. A throttled answer waits for the next turn."""
        service = self.service
        rate = self.rate_of(operation)
        throttles = 0
        not_before = -math.inf
        while True:
            # A call throttled again and again waits behind the others: a service that
            # throttles some tasks' calls must not let them take every turn.
            back_of_line = throttles >= REPEATED_THROTTLES
            sent_at = await self._wait_for_turn(operation, rate, deadline, back_of_line, not_before)
            if isinstance(sent_at, Transient):
                return sent_at
            answered = False
            try:
                with anyio.CancelScope(deadline=deadline) as scope:
                    payload = params() if callable(params) else params
                    if watch is not None:
                        watch(scope, sent_at)
                    response = await service.send(operation, payload)
                    answered = True
            except HeartbeatError:
                raise
            except Exception as exc:
                result: Transient | Final = service.read_error(exc)
            finally:
                ended_at = current_time()
                self.admission.leave(answered=answered)
                if watch is not None:
                    watch(None, ended_at)
            if answered:
                meaning = service.read_answer(operation, response)
                if not isinstance(meaning, Transient):
                    return self._answered(
                        operation, task_id, attempt, response, meaning,
                        sent_at=sent_at, answered_at=ended_at,
                        lease_left=lease.share_left(ended_at) if lease is not None else None,
                    )  # fmt: skip
                result = meaning
            if scope.cancelled_caught:
                if ended_at < scope.deadline:  # cancelled by its watcher
                    return Transient("superseded by another attempt", cut=Cut.SUPERSEDED)
                return Transient(
                    f"no answer within {scope.deadline - sent_at:.3g} s (the deadline)",
                    cut=Cut.DEADLINE,
                )
            if not self._throttled(operation, task_id, attempt, result, sent_at):
                return result
            throttles += 1
            now = current_time()
            urgent = now >= rate.urgent_at(deadline, self.answer_takes() or 0.0)
            retry_after = result.retry_after if isinstance(result, Transient) else None
            not_before = now + rate.retry_wait(
                retry_after, time_left=deadline - now, urgent=urgent, jitter=self.random.random()
            )

    def rate_of(self, operation: str) -> OperationRate:
        rate = self.rates.get(operation)
        if rate is None:
            rate = self.rates[operation] = OperationRate(operation)
        return rate

    async def _wait_for_turn(
        self,
        operation: str,
        rate: OperationRate,
        deadline: float,
        back_of_line: bool,
        not_before: float,
    ) -> float | Transient:
        """Wait for the operation's rate, then the client's capacity, to let a call go;
        return the time it may go (holding a place on the wire), or why it may not."""
        answer_takes = self.answer_takes() or 0.0
        if not await rate.pace(
            deadline, back_of_line=back_of_line, not_before=not_before, answer_takes=answer_takes
        ):
            return Transient(
                f"the client's rate for {operation} left no turn before the deadline",
                cut=Cut.DEADLINE,
            )
        if not await self.admission.enter(deadline, answer_takes=self.answer_takes):
            return Transient(
                "the client had no capacity for another call before the deadline",
                cut=Cut.DEADLINE,
            )
        now = current_time()
        if now >= deadline:
            self.admission.leave()
            return Transient(_NO_TURN, cut=Cut.DEADLINE)
        return now

    async def long_call(self, operation: str, params: Mapping[str, Any]) -> Outcome:
        """One call that may hold its connection for long (PollForTask's long poll).

        It takes one of the pool's connections but no share of the learned limit, and is
        bounded by the client's own read timeout. Throttling paces it like any call.
        """
        service = self.service
        rate = self.rate_of(operation)
        while True:
            await rate.pace(math.inf, back_of_line=True)
            self.admission.long_call(started=True)
            sent_at = current_time()
            try:
                response = await service.send(operation, params)
            except HeartbeatError:
                raise
            except Exception as exc:
                result = confirm_refusal(
                    service.read_error(exc), self.long_call_failures.get(operation)
                )
                self.long_call_failures[operation] = result
            else:
                answered_at = current_time()
                rate.answered(answered_at, self._asked(operation))
                self.long_call_failures.pop(operation, None)
                return Answered(response, sent_at, answered_at)
            finally:
                self.admission.long_call(started=False)
            if not self._throttled(operation, None, 1, result, sent_at):
                return result

    def _slow_down(self, operation: str, rate: OperationRate, retry_after: float | None) -> float:
        if operation == self.service.renew_operation:
            # What the heartbeats ask for, and what keeps their leases, are known: start
            # from what the leases need, and find the client's share from below.
            load = self.load
            return rate.throttled(
                load.asked_per_second, LEASE_MARGIN * load.needed_per_second, retry_after,
                from_floor=True,
            )  # fmt: skip
        return rate.throttled(UNKNOWN_RATE, retry_after=retry_after)

    def _asked(self, operation: str) -> float | None:
        """The calls/s the client asks for ``operation``, where that is known (reports)."""
        return self.load.asked_per_second if operation == self.service.renew_operation else None

    def report_stretch(self) -> float:
        """How many times more reports the heartbeats ask for than the client's rate allows
        (1 while its reports are not throttled): the factor their spacing stretches by."""
        rate = self.rates.get(self.service.renew_operation)
        if rate is None or rate.rate is None:
            return 1.0
        stretch = self.load.asked_per_second / rate.rate
        return PACING_HEADROOM * stretch if stretch > 1 else 1.0

    def _throttled(
        self,
        operation: str,
        task_id: str | None,
        attempt: int,
        result: Transient | Final,
        sent_at: float,
    ) -> bool:
        """Take in a failed call: True if it was throttled (the operation's rate is slowed,
        and the call waits for its next turn), else False (the caller returns the failure)."""
        now = current_time()
        if isinstance(result, Transient) and result.throttled:
            self.emit(
                Event(
                    EventKind.THROTTLED, operation, task_id, attempt,
                    description=result.description, error=result.error,
                    rate=self._slow_down(operation, self.rate_of(operation), result.retry_after),
                )
            )  # fmt: skip
            return True
        if isinstance(result, Final):  # a transient failure is told by `call`, retried or not
            self.overload.error(now)
            self.emit(
                Event(
                    EventKind.FAILED, operation, task_id, attempt, final=True,
                    latency=now - sent_at, error=result.error, description=result.description,
                )
            )  # fmt: skip
        elif result.cut is None:
            self.overload.error(now)
        return False

    def _overloaded(self, description: str) -> None:
        self.emit(
            Event(
                EventKind.OVERLOADED, self.service.renew_operation, description=description,
                heartbeats=self.load.heartbeats, asked_per_second=self.load.asked_per_second,
            )
        )  # fmt: skip

    def hedge_after(self, floor: float) -> float:
        """How long a call may go unanswered before a second attempt beside it is worth its
        load: ``floor`` (a heartbeat's ``call_timeout``), or more while answers are slow."""
        return self.latency.overdue_after(floor)

    def answer_takes(self) -> float | None:
        """How long an answer may take, as answers have shown (None before they have): a
        call sent later than its deadline less this is urgent."""
        return self.latency.overdue_after(0.0) if self.latency.smoothed is not None else None

    def may_hedge(self) -> bool:
        """Whether a second attempt may be sent now: not while the client has no spare
        capacity (on a pool saturated by a slow service, it would take a place from a report
        and lose leases; ask again later), nor while a fresh client's first call may still
        be building its HTTP session (a hung first call gets one once it is built)."""
        return self.admission.session_built() and self.admission.spare()

    def emit(self, event: Event) -> None:
        """Hand ``event`` to the global hooks, then to this client's. A hook that raises is
        logged and does not stop the others."""
        for hooks in (get_hooks(), self.hooks):
            for hook in hooks:
                try:
                    hook(event)
                except Exception:  # an observer must never break the calls it observes
                    logger.exception("hook %r failed", hook, extra=fields("hook_failed"))

    def _answered(
        self,
        operation: str,
        task_id: str | None,
        attempt: int,
        response: Any,
        stop: Final | None,
        *,
        sent_at: float,
        answered_at: float,
        lease_left: float | None = None,
    ) -> Answered:
        latency = answered_at - sent_at
        if self.answered_once:
            # A fresh client's first answer includes building its session: not a latency.
            self.latency.add(latency)
        else:
            self.answered_once = True
            self.admission.first_answer()
        self.rates[operation].answered(answered_at, self._asked(operation))
        self.emit(
            Event(EventKind.ANSWERED, operation, task_id, attempt, latency=latency,
                  lease_left=lease_left)
        )  # fmt: skip
        return Answered(response, sent_at, answered_at, stop)
