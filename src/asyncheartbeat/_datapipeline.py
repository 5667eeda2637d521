"""Everything that is Data Pipeline's: the operations, what their answers and errors mean,
the service's rules, and the aiobotocore client that speaks to it.

The reporter speaks to a lease service only through `DataPipeline` (its `method`,
`read_answer` and `read_error`): it does not know what ``canceled`` is, nor which error
codes end a task. Failures are read from the shape botocore gives them
(``exc.response["Error"]["Code"]``), not from aiobotocore classes, so any client with the
same coroutine methods will do.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ._errors import CancelReason, HeartbeatError
from ._log import shorten
from ._service import Final, Transient

#: The operation that renews a task's lease.
REPORT = "ReportTaskProgress"
POLL = "PollForTask"
SET_STATUS = "SetTaskStatus"
RUNNER_HEARTBEAT = "ReportTaskRunnerHeartbeat"
#: The service's rule: a task handed out must be acknowledged within this many seconds.
ACKNOWLEDGEMENT_LIMIT = 120.0
#: The longest PollForTask holds a call open when no task is ready.
LONGEST_POLL = 90.0


class ProgressClient(Protocol):
    """Anything that can send ReportTaskProgress: typically an aiobotocore DataPipeline client.

    A type for type checkers: `Heartbeat` calls nothing else. Errors are expected in
    botocore's shape (``exc.response["Error"]["Code"]``).
    """

    async def report_task_progress(
        self, *, taskId: str, fields: list[dict[str, str]]
    ) -> Mapping[str, Any]:
        """Send one report.

        Args:
            taskId: The task.
            fields: The progress fields, in the API's shape.

        Returns:
            The service's answer, with a boolean ``canceled``.
        """
        ...


class DataPipeline:
    """Data Pipeline as a lease service: how a renewal is asked for, how answers and errors
    read. One per client, made by the client's `Reporter`."""

    renew_operation = REPORT
    #: A task not acknowledged within this long is the service's again, whatever the lease.
    acknowledge_within = ACKNOWLEDGEMENT_LIMIT

    def __init__(self, client: Any) -> None:
        self.client = client
        self._methods: dict[str, Callable[..., Any]] = {}
        self._checked_backend = False

    @staticmethod
    def renewal(task_id: str, fields: list[dict[str, str]]) -> dict[str, Any]:
        """The parameters of the report that renews ``task_id``'s lease."""
        return {"taskId": task_id, "fields": fields}

    def method(self, operation: str) -> Callable[..., Any]:
        """The client's coroutine method for ``operation``, or a `HeartbeatError`."""
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

    async def send(self, operation: str, params: Mapping[str, Any]) -> Any:
        """One call of ``operation``: the client's answer, or its exception as it raised it.

        Raises:
            HeartbeatError: A mistake no retry can mend: a sync or closed client, one made
                on another event loop, aiobotocore on trio.
        """
        method = self.method(operation)
        if not self._checked_backend:
            # Made outside any event loop, the reporter could not tell its backend then.
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

    @staticmethod
    def read_answer(operation: str, response: object) -> Final | Transient | None:
        """What an answer means: carry on (None), stop the work (a `Final`), or a malformed
        answer, worth another try (a `Transient`)."""
        if operation != REPORT:
            return None
        canceled = response.get("canceled") if isinstance(response, Mapping) else None
        if not isinstance(canceled, bool):
            shown = shorten(repr(response), 80)
            return Transient(f"malformed answer, no boolean 'canceled' in {shown}")
        # canceled: true: stop the work; no SetTaskStatus is needed.
        return _CANCELED if canceled else None

    @staticmethod
    def read_error(error: Exception) -> Transient | Final:
        """Classify an exception the client raised: final with a reason, or worth retrying.

        An error that is not known to be final is retried: if it never clears, the lease
        runs out and the work stops with LEASE_LOST, carrying that error. Stopping the work
        on an unknown hiccup would be the worse mistake.
        """
        response = getattr(error, "response", None)
        if isinstance(response, Mapping) and isinstance(response.get("Error"), Mapping):
            code = str(response["Error"].get("Code") or "")
            message = str(response["Error"].get("Message") or "")
            metadata = response.get("ResponseMetadata") or {}
            status = metadata.get("HTTPStatusCode")
            description = (
                f"{code or 'error'} (HTTP {status}): {message}"
                if status
                else (f"{code or 'error'}: {message}")
            )
            if status == 407:
                # A proxy between the client and the service wants credentials: no retry
                # can mend that, only the client's configuration.
                raise HeartbeatError(
                    f"a proxy refused the call: {description}. Give the proxy's credentials in "
                    f"the client's proxy URL (Config(proxies={{'https': 'http://user:pass@host:port'}}))"
                ) from error
            if code in _FATAL_CODES:
                return Final(_FATAL_CODES[code], description, error)
            if code in _REJECTED_CODES:
                return Final(CancelReason.REJECTED, description, error)
            if code in _REFUSED_CODES:
                return Transient(description, error, refusal=CancelReason.REJECTED)
            throttled = code in _THROTTLING_CODES or status == 429
            retry_after = _retry_after(metadata.get("HTTPHeaders")) if throttled else None
            return Transient(description, error, throttled=throttled, retry_after=retry_after)
        return _read_unanswered(error)


_CANCELED = Final(CancelReason.REQUESTED, "the service answered canceled: true")


def _read_unanswered(error: Exception) -> Transient | Final:
    """An error without the service's answer in it: botocore's own, or the connection's."""
    description = f"{type(error).__name__}: {error}"
    rejected, refused = _botocore_local_errors()
    if isinstance(error, rejected):
        return Final(CancelReason.REJECTED, description, error)
    if isinstance(error, refused):  # no credentials found this time: they may come back
        return Transient(description, error, refusal=CancelReason.REJECTED)
    return Transient(description, error)


def _retry_after(headers: object) -> float | None:
    """Seconds from an ``x-amz-retry-after`` header (milliseconds), if the answer has one."""
    if not isinstance(headers, Mapping):
        return None
    text = headers.get("x-amz-retry-after")
    try:
        milliseconds = float(text) if text is not None else None
    except ValueError:
        return None
    if milliseconds is None or not 0 <= milliseconds < 3_600_000:
        return None
    return milliseconds / 1000


_FATAL_CODES = {
    "TaskNotFoundException": CancelReason.TASK_NOT_FOUND,
    "PipelineNotFoundException": CancelReason.PIPELINE_NOT_FOUND,
    "PipelineDeletedException": CancelReason.PIPELINE_DELETED,
}

# The request itself is wrong: no retry can succeed.
_REJECTED_CODES = frozenset(
    {
        "InvalidRequestException",
        "ValidationException",
        "SerializationException",
        "UnknownOperationException",
    }
)

# The credentials, the signature or the permissions were refused. Credentials refresh and
# clocks skew, so one such answer may be a blip: final only once it repeats.
_REFUSED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "AuthFailure",
        "NotAuthorized",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)

# The service's answers to a client calling too fast (botocore's own list of throttling codes).
_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)

# Mistakes in the program, not the service's answer: a sync client, a closed one, a client
# bound to another event loop or async library. Retrying them only hides them until the
# lease runs out, so they fail at once.
_LOCAL_ERRORS = (TypeError, AttributeError, NameError, NotImplementedError, RuntimeError)

# Where botocore and aiobotocore turn the service's answer into a response.
_ANSWER_PARSERS = (
    os.path.join("botocore", "parsers.py"),
    os.path.join("aiobotocore", "parsers.py"),
)
# Where the parsed answer is completed (``parsed_response.update(...)``): a JSON ``null``
# body parses to None and fails there, raised in that frame itself.
_ANSWER_HANDLERS = (
    (os.path.join("botocore", "endpoint.py"), "_do_get_response"),
    (os.path.join("aiobotocore", "endpoint.py"), "_do_get_response"),
)

# Raised by botocore before anything is sent, for a request no retry can fix.
_REJECTED_LOCAL_ERRORS = ("ParamValidationError",)
_REFUSED_LOCAL_ERRORS = ("NoCredentialsError", "PartialCredentialsError")


def local_error(error: BaseException) -> BaseException | None:
    """The programming mistake behind ``error``, if it is one (see `_LOCAL_ERRORS`).

    botocore wraps an unexpected exception of its HTTP layer (a closed client's missing
    session, say) in HTTPClientError; the wrapped one decides. One raised while botocore
    read the answer (its parser meets a JSON body that is a list, say) is the service's
    malformed answer, not a mistake of the program: it is retried like any bad answer.
    """
    wrapped = getattr(error, "kwargs", {}).get("error") if _is_http_client_error(error) else None
    candidate = wrapped if isinstance(wrapped, BaseException) else error
    if not isinstance(candidate, _LOCAL_ERRORS) or _raised_reading_an_answer(candidate):
        return None
    return candidate


def _raised_reading_an_answer(error: BaseException) -> bool:
    traceback = error.__traceback__
    innermost = None
    while traceback is not None:
        code = traceback.tb_frame.f_code
        if code.co_filename.endswith(_ANSWER_PARSERS):
            return True
        innermost = code
        traceback = traceback.tb_next
    return innermost is not None and any(
        innermost.co_filename.endswith(file) and innermost.co_name == name
        for file, name in _ANSWER_HANDLERS
    )


def _is_http_client_error(error: BaseException) -> bool:
    return any(cls.__name__ == "HTTPClientError" for cls in type(error).__mro__)


@functools.cache
def _botocore_local_errors() -> tuple[
    tuple[type[BaseException], ...], tuple[type[BaseException], ...]
]:
    """botocore's errors raised before sending: those no retry can fix, and those that
    may clear (credentials not found this time)."""
    # Only looked up once a report has failed: botocore stays off the hot path.
    try:
        import botocore.exceptions  # noqa: PLC0415
    except ImportError:  # pragma: no cover - botocore comes with aiobotocore
        return (), ()
    return tuple(getattr(botocore.exceptions, name) for name in _REJECTED_LOCAL_ERRORS), tuple(
        getattr(botocore.exceptions, name) for name in _REFUSED_LOCAL_ERRORS
    )


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


def refuse_sync_client(client: object) -> None:
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
