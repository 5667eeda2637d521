"""One call layer per client: every call to the service goes through it.

Heartbeats' reports and a task runner's polls, statuses and own heartbeat share the
client's capacity, and the service judges the client (its rate limits are per account), so
the rules for calling live here, once:

- A call is never abandoned while its answer can still count: it is bounded by the
  caller's deadline (for a report, the end of the lease), not by a guess at latency. A call
  cut short is thrown away after the service received it, and aiohttp closes its
  connection, so the retry pays for a new one: cutting slow calls makes a slow client slower.
- Admission by measured capacity (`Admission`), served by urgency (`TurnQueue`).
- Throttling slows the client's rate for that operation (`OperationRate`), not each caller.
- Transient failures are retried with capped exponential backoff and full jitter until the
  deadline; final ones end the request with a reason; programming mistakes (a sync client,
  a closed client, a client on the wrong event loop) raise `HeartbeatError` at once.
- Every outcome is an `instrumentation.Event` for the layer's hooks and the global ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import sys
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio

from ._admission import Admission
from ._client import Failure, local_error, read_failure
from ._clock import current_time
from ._errors import HeartbeatError
from ._latency import Latency
from ._log import fields
from ._overload import OverloadWindow
from ._throttle import OperationRate
from ._timing import jittered_backoff
from .instrumentation import Event, EventKind, Hook, get_hooks

#: The service's rule: a task handed out must be acknowledged within this many seconds.
ACKNOWLEDGEMENT_LIMIT = 120.0
#: Throttled reports slow down to no less than this many times the rate that keeps every
#: lease: below it leases are lost for certain. Little more: a floor above what the service
#: allows would keep the client throttled.
LEASE_MARGIN = 1.1
#: A call throttled this many times in a row waits for its next turn behind the others.
REPEATED_THROTTLES = 3
#: What an operation other than reports is taken to have been sent at when first throttled.
UNKNOWN_RATE = 2.0
#: The longest PollForTask holds a call open when no task is ready.
LONGEST_POLL = 90.0

logger = logging.getLogger("asyncheartbeat")

_layers: weakref.WeakKeyDictionary[Any, CallLayer] = weakref.WeakKeyDictionary()


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """An answered call: the service's response, when the answered attempt was sent, and
    when its answer came."""

    response: Mapping[str, Any]
    sent_at: float
    answered_at: float


#: A call's parameters, or a function that gives them afresh for each attempt.
Params = Mapping[str, Any] | Callable[[], Mapping[str, Any]]
#: Says what is wrong with an answer the service gave (then it counts as a transient
#: failure), or None.
Check = Callable[[Mapping[str, Any]], str | None]
#: Told of each attempt: its cancel scope and the time, as it goes on the wire; None and
#: the time, as it ends.
Watch = Callable[[anyio.CancelScope | None, float], object]


class CallLayer:
    """The calls of one client (an aiobotocore DataPipeline client, or anything with its
    coroutine methods): shared capacity, urgency, throttling, retries and events.

    Heartbeats and task runners given the same client share its layer (`CallLayer.of`); give
    them a `CallLayer` instead to choose its hooks or its source of randomness.

    The rules it keeps (wait for slow answers, try beside hung ones, admit calls by measured
    capacity, slow the whole client when throttled) are explained in
    [Calls: one layer per client](../timing-and-reasons.md#calls-one-layer-per-client).
    `Heartbeat` and `TaskRunner` call its methods; job code seldom needs to.

    Args:
        client: An aiobotocore DataPipeline client (or anything with its coroutine methods).
            Not a `CallLayer`: pass a layer on as it is.
        hooks: Called with every `Event` of this layer, after the global hooks of
            `asyncheartbeat.instrumentation.set_hooks`.
        random_source: Where backoff jitter comes from; seed one for repeatable tests. A new
            `random.Random` unless given.

    Raises:
        TypeError: ``client`` is a `CallLayer`, a sync botocore or boto3 client, or a hook
            is not callable.
    """

    def __init__(
        self,
        client: Any,
        *,
        hooks: Iterable[Hook] = (),
        random_source: random.Random | None = None,
    ) -> None:
        if isinstance(client, CallLayer):
            raise TypeError("client is a CallLayer already: pass it on as it is")
        _refuse_sync_client(client)
        refuse_foreign_backend(client)
        self.client = client
        #: Hooks of this layer, called with every `Event` after the global ones.
        self.hooks = tuple(hooks)
        for hook in self.hooks:
            if not callable(hook):
                raise TypeError(f"a hook must be callable, got {type(hook).__name__}")
        #: Where backoff jitter comes from: seed it for repeatable tests.
        self.random = random_source or random.Random()
        self.admission = Admission(pool_size(client))
        self.latency = Latency()
        self._rates: dict[str, OperationRate] = {}
        self._methods: dict[str, Callable[..., Any]] = {}
        self._answered_once = False
        self._checked_backend = False
        #: Heartbeats running on this layer, the reports/s they ask for together, and the
        #: reports/s that would keep all their leases (one per lease each).
        self.heartbeats = 0
        self.asked_per_second = 0.0
        self.needed_per_second = 0.0
        self._overload = OverloadWindow(
            self._overloaded, lambda: (self.heartbeats, self.asked_per_second)
        )

    @classmethod
    def of(cls, client: Any) -> CallLayer:
        """The layer of ``client``, made on first use and kept as long as the client lives.

        Args:
            client: A client, or a layer (returned as it is).

        Returns:
            The client's one layer, shared by every heartbeat and runner given that client.
        """
        if isinstance(client, CallLayer):
            refuse_foreign_backend(client.client)
            return client
        try:
            layer = _layers.get(client)
        except TypeError:  # cannot be weakly referenced: a layer of its own each time
            return cls(client)
        if layer is None:
            layer = _layers[client] = cls(client)  # which checks the backend
        else:
            refuse_foreign_backend(client)
        return layer

    def __repr__(self) -> str:
        return (
            f"<CallLayer of {type(self.client).__name__}: {self.admission.in_flight} in flight, "
            f"limit {self.admission.capacity}, {len(self.admission.queue)} waiting>"
        )

    def rate(self, operation: str) -> float | None:
        """The calls/s this client allows itself for ``operation`` since it was throttled.

        Args:
            operation: An operation name, such as ``"ReportTaskProgress"``.

        Returns:
            The rate, or None while the operation is not throttled.
        """
        rate = self._rates.get(operation)
        return rate.rate if rate is not None else None

    # -- calling ----------------------------------------------------------------------------

    async def call(
        self,
        operation: str,
        params: Params,
        *,
        deadline: float | Callable[[], float],
        task_id: str | None = None,
        backoff_start: float = 1.0,
        backoff_cap: float = 30.0,
        watch: Watch | None = None,
        check: Check | None = None,
    ) -> Reply | Failure:
        """Call ``operation`` until it is answered, fails for good, or ``deadline`` passes
        (a time, or a function that tells it, for a deadline that may move on).

        Transient failures are retried after a jittered backoff that starts at
        ``backoff_start`` seconds and doubles up to ``backoff_cap``; throttled calls wait
        for the client's next turn instead.

        Args:
            operation: The operation's name, such as ``"SetTaskStatus"``.
            params: Its parameters, or a function that makes them afresh for each attempt.
            deadline: When to give up, on the anyio clock: a time, or a function that tells
                it.
            task_id: The task the call is for, named in its events.
            backoff_start: The first retry's backoff cap, in seconds.
            backoff_cap: The longest backoff, in seconds.
            watch: Told of each attempt as it goes on the wire (its cancel scope and the
                time) and as it ends (None and the time).
            check: Says what is wrong with an answer (it then counts as a transient
                failure), or returns None.

        Returns:
            The answer (a `Reply`), or why the call did not go through (a `Failure`, whose
            ``reason`` is set when it failed for good).

        Raises:
            HeartbeatError: A programming mistake: a closed or sync client, aiobotocore on
                trio, a TypeError, AttributeError or RuntimeError from the call.
        """
        deadline_now = deadline if callable(deadline) else lambda: deadline
        failures = 0
        last: Failure | None = None
        limit = deadline_now()
        # The first attempt reads no clock here: `attempt` checks the deadline as it sends.
        while failures == 0 or current_time() < (limit := deadline_now()):
            result = await self.attempt(
                operation, params, deadline=limit, task_id=task_id, watch=watch,
                check=check, attempt=failures + 1,
            )  # fmt: skip
            if isinstance(result, Reply) or result.reason is not None or result.superseded:
                return result
            failures += 1
            now, limit = current_time(), deadline_now()
            # A call cut short by the deadline says nothing new about why calls fail.
            if not (result.timed_out and now >= limit and last is not None):
                last = result
            delay = jittered_backoff(
                failures, start=backoff_start, cap=backoff_cap, rng=self.random
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
        return last or Failure("the deadline passed before the call could be sent", timed_out=True)

    async def attempt(
        self,
        operation: str,
        params: Params,
        *,
        deadline: float,
        task_id: str | None = None,
        watch: Watch | None = None,
        check: Check | None = None,
        attempt: int = 1,
    ) -> Reply | Failure:
        """Send ``operation`` once, when the client's rate and capacity allow, and wait for
        its answer until ``deadline``.

        A throttled answer waits for the next turn; an answer ``check`` finds wrong is a
        transient failure.

        Args:
            operation: The operation's name.
            params: Its parameters, or a function that makes them.
            deadline: When to give up waiting, on the anyio clock.
            task_id: The task the call is for, named in its events.
            watch: Told of the attempt as it goes on the wire and as it ends (see `call`).
            check: Says what is wrong with an answer, or returns None.
            attempt: Which attempt in a row this is, for its events.

        Returns:
            A `Reply`, or a `Failure`.

        Raises:
            HeartbeatError: A programming mistake (see `call`).
        """
        method = self._method(operation)
        rate = self._rate(operation)
        throttles = 0
        while True:
            # A call throttled again and again waits behind the others: a service that
            # throttles some tasks' calls must not let them take every turn.
            back_of_line = throttles >= REPEATED_THROTTLES
            sent_at = await self._wait_for_turn(operation, rate, deadline, back_of_line)
            if isinstance(sent_at, Failure):
                return sent_at
            answered = False
            try:
                with anyio.CancelScope(deadline=deadline) as scope:
                    payload = params() if callable(params) else params
                    if watch is not None:
                        watch(scope, sent_at)
                    response = await self._send(method, payload)
                    answered = True
            except HeartbeatError:
                raise
            except Exception as exc:
                result = read_failure(exc)
            finally:
                ended_at = current_time()
                self.admission.leave(answered=answered)
                if watch is not None:
                    watch(None, ended_at)
            if answered:
                problem = check(response) if check is not None else None
                if problem is None:
                    return self._answered(
                        operation, task_id, attempt, response, sent_at=sent_at, answered_at=ended_at
                    )
                result = Failure(problem)
            if scope.cancelled_caught:
                if ended_at < scope.deadline:  # cancelled by its watcher
                    return Failure("superseded by another attempt", superseded=True)
                return Failure(
                    f"no answer within {scope.deadline - sent_at:.3g} s (the deadline)",
                    timed_out=True,
                )
            if not self._throttled(operation, task_id, attempt, result, sent_at):
                return result
            throttles += 1

    def _rate(self, operation: str) -> OperationRate:
        rate = self._rates.get(operation)
        if rate is None:
            rate = self._rates[operation] = OperationRate(operation)
        return rate

    async def _wait_for_turn(
        self, operation: str, rate: OperationRate, deadline: float, back_of_line: bool
    ) -> float | Failure:
        """Wait for the operation's rate, then the client's capacity, to let a call go;
        return the time it may go (holding a place on the wire), or why it may not."""
        if not await rate.pace(deadline, back_of_line=back_of_line):
            return Failure(
                f"the client's rate for {operation} left no turn before the deadline",
                timed_out=True,
            )
        if not await self.admission.enter(deadline, answer_takes=self._answer_takes):
            return Failure(
                "the client had no capacity for another call before the deadline", timed_out=True
            )
        now = current_time()
        if now >= deadline:
            self.admission.leave()
            return Failure("the deadline passed before the call could be sent", timed_out=True)
        return now

    async def long_call(self, operation: str, params: Mapping[str, Any]) -> Reply | Failure:
        """One call that may hold its connection for long (PollForTask's long poll).

        It takes one of the pool's connections but no share of the learned limit, and is
        bounded by the client's own read timeout. Throttling paces it like any call.

        Args:
            operation: The operation's name, such as ``"PollForTask"``.
            params: Its parameters.

        Returns:
            A `Reply`, or a `Failure`.
        """
        method = self._method(operation)
        rate = self._rate(operation)
        while True:
            await rate.pace(math.inf, back_of_line=True)
            self.admission.long_call(started=True)
            sent_at = current_time()
            try:
                response = await self._send(method, params)
            except HeartbeatError:
                raise
            except Exception as exc:
                result = read_failure(exc)
            else:
                answered_at = current_time()
                rate.answered(answered_at)
                return Reply(response, sent_at, answered_at)
            finally:
                self.admission.long_call(started=False)
            if not self._throttled(operation, None, 1, result, sent_at):
                return result

    def _slow_down(self, operation: str, rate: OperationRate) -> float:
        if operation == "ReportTaskProgress":
            # What the heartbeats ask for, and what keeps their leases, are known.
            return rate.throttled(
                self.asked_per_second, floor=LEASE_MARGIN * self.needed_per_second
            )
        return rate.throttled(UNKNOWN_RATE)

    def _throttled(
        self, operation: str, task_id: str | None, attempt: int, result: Failure, sent_at: float
    ) -> bool:
        """Take in a failed call: True if it was throttled (the operation's rate is slowed,
        and the call waits for its next turn), else False (the caller returns the failure)."""
        now = current_time()
        if result.throttled:
            self.emit(
                Event(
                    EventKind.THROTTLED, operation, task_id, attempt,
                    description=result.description, error=result.error,
                    rate=self._slow_down(operation, self._rate(operation)),
                )
            )  # fmt: skip
            return True
        if not result.timed_out:
            self._overload.error(now)
        if result.reason is not None:  # a transient failure is told by `call`, retried or not
            self.emit(
                Event(
                    EventKind.FAILED, operation, task_id, attempt, final=True,
                    latency=now - sent_at, error=result.error, description=result.description,
                )
            )  # fmt: skip
        return False

    # -- heartbeats' load --------------------------------------------------------------------

    def join(self, interval: float, lease_timeout: float) -> None:
        """A heartbeat reporting every ``interval`` seconds starts using this layer.

        Args:
            interval: Its seconds between reports.
            lease_timeout: Its lease, in seconds: one report per lease keeps it.
        """
        self.heartbeats += 1
        self.asked_per_second += 1 / interval
        self.needed_per_second += 1 / lease_timeout

    def leave(self, interval: float, lease_timeout: float) -> None:
        """A heartbeat that `join`-ed with these numbers stops using this layer.

        Args:
            interval: The interval it joined with.
            lease_timeout: The lease it joined with.
        """
        self.heartbeats -= 1
        self.asked_per_second -= 1 / interval
        self.needed_per_second -= 1 / lease_timeout

    def report_due(self, now: float, lateness: float, threshold: float) -> None:
        """A scheduled report was answered (or given up) ``lateness`` seconds after its slot.

        Args:
            now: When, on the anyio clock.
            lateness: Seconds after its slot.
            threshold: Lateness beyond which it counts as late, for the overload warning.
        """
        self._overload.report_due(now, lateness, threshold)

    def woke_late(self, lateness: float, now: float) -> None:
        """A heartbeat woke ``lateness`` seconds after its report was due: the loop lags.

        Args:
            lateness: Seconds after the report was due.
            now: When it woke, on the anyio clock.
        """
        self.admission.loop_lag(lateness, now)

    def _overloaded(self, description: str) -> None:
        self.emit(
            Event(
                EventKind.OVERLOADED, "ReportTaskProgress", description=description,
                heartbeats=self.heartbeats, asked_per_second=self.asked_per_second,
            )
        )  # fmt: skip

    def hedge_after(self, floor: float) -> float:
        """How long a call may go unanswered before a second attempt beside it is worth its
        load. Whether one may be sent then is `may_hedge`'s to say.

        Args:
            floor: The least delay, in seconds (a heartbeat's ``call_timeout``).

        Returns:
            ``floor``, or more while answers are known to be slow.
        """
        return self.latency.overdue_after(floor)

    def _answer_takes(self) -> float | None:
        """How long an answer may take, as answers have shown (None before they have): a
        call sent later than its deadline less this is urgent."""
        return self.latency.overdue_after(0.0) if self.latency.smoothed is not None else None

    def may_hedge(self) -> bool:
        """Whether a second attempt may be sent now: not while the client has no spare
        capacity (on a pool saturated by a slow service, it would take a place from a report
        and lose leases; ask again later), nor before the client's first answer (a fresh
        client's first call includes building its HTTP session)."""
        return self._answered_once and self.admission.spare()

    def emit(self, event: Event) -> None:
        """Hand ``event`` to the global hooks, then to this layer's.

        A hook that raises is logged and does not stop the others.

        Args:
            event: What happened.
        """
        for hooks in (get_hooks(), self.hooks):
            for hook in hooks:
                try:
                    hook(event)
                except Exception:  # an observer must never break the calls it observes
                    logger.exception("hook %r failed", hook, extra=fields("hook_failed"))

    # -- internals ----------------------------------------------------------------------------

    def _method(self, operation: str) -> Callable[..., Any]:
        if (method := self._methods.get(operation)) is not None:
            return method
        name = _snake_case(operation)
        method = getattr(self.client, name, None)
        if not callable(method):
            raise HeartbeatError(
                f"the client has no {name} method: give an aiobotocore 'datapipeline' client"
            )
        self._methods[operation] = method
        return method  # type: ignore[no-any-return]

    async def _send(self, method: Callable[..., Any], params: Mapping[str, Any]) -> Any:
        if not self._checked_backend:
            # Made outside any event loop, the layer could not tell its backend then.
            refuse_foreign_backend(self.client, running=True)
            self._checked_backend = True
        try:
            pending = method(**params)
            if not hasattr(pending, "__await__"):
                raise HeartbeatError(  # noqa: TRY301 - one message for every local mistake
                    f"the client's {getattr(method, '__name__', 'method')} returned "
                    f"{type(pending).__name__}, not an awaitable: a sync (boto3) client? "
                    f"give an aiobotocore client"
                )
            return await pending
        except HeartbeatError:
            raise
        except Exception as exc:
            if (mistake := local_error(exc)) is not None:
                raise HeartbeatError(
                    f"the client cannot make calls ({type(mistake).__name__}: {mistake}): a "
                    f"closed client, a client made on another event loop, or not an aiobotocore "
                    f"'datapipeline' client? This is not retried"
                ) from exc
            raise

    def _answered(
        self,
        operation: str,
        task_id: str | None,
        attempt: int,
        response: Any,
        *,
        sent_at: float,
        answered_at: float,
    ) -> Reply:
        latency = answered_at - sent_at
        if self._answered_once:
            # A fresh client's first answer includes building its session: not a latency.
            self.latency.add(latency)
        else:
            self._answered_once = True
            self.admission.first_answer()
        self._rates[operation].answered(answered_at)
        self.emit(Event(EventKind.ANSWERED, operation, task_id, attempt, latency=latency))
        return Reply(response, sent_at, answered_at)


def client_config(**overrides: Any) -> Any:
    """An aiobotocore ``AioConfig`` for the client a layer calls through, ``overrides`` applied.

    - ``retries``: one attempt per call (standard mode). The layer retries, spaces throttled
      calls for the whole client and knows each call's deadline; botocore's own retries
      would multiply attempts behind its back, and adaptive mode's client-side rate
      limiter would make calls wait where no deadline orders them.
    - ``read_timeout``: 100 s, which outlasts PollForTask's 90 s long poll (botocore's
      default of 60 s cuts it).
    - ``connect_timeout``: 10 s.

    Example:
        ```python
        session.create_client("datapipeline", config=client_config(max_pool_connections=20))
        ```

    Args:
        **overrides: Any ``AioConfig`` option, replacing the defaults above.

    Returns:
        An ``aiobotocore.config.AioConfig``, for ``create_client(..., config=...)``.
    """
    from aiobotocore.config import AioConfig  # noqa: PLC0415 - only where a client is made

    return AioConfig(**(client_config_defaults() | overrides))


def client_config_defaults() -> dict[str, Any]:
    """The settings of `client_config`, as keyword arguments of a botocore ``Config``."""
    return {
        "read_timeout": LONGEST_POLL + 10,
        "connect_timeout": 10,
        "retries": {"mode": "standard", "total_max_attempts": 1},
    }


def pool_size(client: object) -> int | None:
    """How many calls the client can have on the wire at once: its botocore config's
    ``max_pool_connections`` (aiobotocore's default is 10), or None if it has none."""
    config = getattr(getattr(client, "meta", None), "config", None)
    size = getattr(config, "max_pool_connections", None)
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def _snake_case(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def _class_names(client: object) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(client).__mro__}


def _refuse_sync_client(client: object) -> None:
    names = _class_names(client)
    if "botocore.client.BaseClient" in names and "aiobotocore.client.AioBaseClient" not in names:
        raise TypeError(
            "client is a sync botocore/boto3 client, whose calls block the event loop: "
            "create it with aiobotocore (get_session().create_client('datapipeline', ...)), "
            "or wrap it to run its calls in threads: asyncheartbeat.ThreadedClient(client)"
        )


def refuse_foreign_backend(client: object, *, running: bool = False) -> None:
    """Raise `HeartbeatError` if ``client`` is an aiobotocore client and the code runs on
    another async library than asyncio (on trio, each of its calls fails).

    Args:
        client: The client a heartbeat or task runner was given.
        running: The caller is a coroutine, so an event loop runs: one that is not asyncio's
            is foreign even when it cannot be named. Otherwise (a constructor, which may be
            called outside any loop) only a running trio is known to be foreign.
    """
    if "aiobotocore.client.AioBaseClient" not in _class_names(client):
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        backend = _running_trio()
        if backend is None and not running:
            return  # no event loop yet: checked again at the first call
        raise HeartbeatError(
            f"aiobotocore clients run on asyncio only, and this code runs on "
            f"{backend or 'another event loop'}, where each of their calls fails: run it on "
            f"asyncio, or wrap a boto3 client, which works on any backend: "
            f"asyncheartbeat.ThreadedClient(boto3.client('datapipeline', ...)) (docs/trio.md)"
        ) from None


def _running_trio() -> str | None:
    """The name "trio" if this thread runs trio now, else None."""
    trio = sys.modules.get("trio")
    if trio is None:
        return None
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None
    return "trio"
