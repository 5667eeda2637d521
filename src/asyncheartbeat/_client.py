"""The wire client adapter: what the heartbeat needs of a client, and how its answers read.

The heartbeat calls nothing but ``report_task_progress``; any object with that coroutine
method will do, so the core runs under trio as well as asyncio. Failures are read from the
shape botocore gives them (``exc.response["Error"]["Code"]``), not from aiobotocore classes.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from typing import Any, Protocol

from ._errors import CancelReason


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


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """The service took the report and answered."""

    sent_at: float
    canceled: bool
    #: The time the next regular report is counted from.
    anchor: float
    #: When the answer came.
    answered_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """A report that did not go through. ``reason`` is None when trying again may succeed."""

    description: str
    reason: CancelReason | None = None
    error: BaseException | None = None
    #: The call was abandoned unanswered at a deadline.
    timed_out: bool = False
    #: The service refused the call for the client's rate: wait for a turn, do not retry.
    throttled: bool = False
    #: The caller cancelled the attempt because another one answered first.
    superseded: bool = False


_FATAL_CODES = {
    "TaskNotFoundException": CancelReason.TASK_NOT_FOUND,
    "PipelineNotFoundException": CancelReason.PIPELINE_NOT_FOUND,
    "PipelineDeletedException": CancelReason.PIPELINE_DELETED,
}

# The request itself, the credentials or the permissions are wrong: no retry can succeed.
_REJECTED_CODES = frozenset(
    {
        "InvalidRequestException",
        "ValidationException",
        "SerializationException",
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
        "UnknownOperationException",
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

# Raised by botocore before anything is sent, for a request no retry can fix.
_REJECTED_LOCAL_ERRORS = ("NoCredentialsError", "PartialCredentialsError", "ParamValidationError")


def report_answer_problem(response: object) -> str | None:
    """What is wrong with a ReportTaskProgress response: it must have a boolean ``canceled``."""
    canceled = response.get("canceled") if isinstance(response, Mapping) else None
    if not isinstance(canceled, bool):
        return f"malformed answer, no boolean 'canceled' in {_preview(response)}"
    return None


def read_failure(error: Exception) -> Failure:
    """Classify an exception the client raised: fatal with a reason, or worth retrying.

    An error that is not known to be final is retried: if it never clears, the lease runs
    out and the work stops with LEASE_LOST, carrying that error. Stopping the work on an
    unknown hiccup would be the worse mistake.
    """
    response = getattr(error, "response", None)
    if isinstance(response, Mapping) and isinstance(response.get("Error"), Mapping):
        code = str(response["Error"].get("Code") or "")
        message = str(response["Error"].get("Message") or "")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        description = (
            f"{code or 'error'} (HTTP {status}): {message}"
            if status
            else (f"{code or 'error'}: {message}")
        )
        if code in _FATAL_CODES:
            return Failure(description, _FATAL_CODES[code], error)
        if code in _REJECTED_CODES:
            return Failure(description, CancelReason.REJECTED, error)
        throttled = code in _THROTTLING_CODES or status == 429
        return Failure(description, None, error, throttled=throttled)
    description = f"{type(error).__name__}: {error}"
    if any(isinstance(error, cls) for cls in _botocore_local_errors()):
        return Failure(description, CancelReason.REJECTED, error)
    return Failure(description, None, error)


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
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename.endswith(_ANSWER_PARSERS):
            return True
        traceback = traceback.tb_next
    return False


def _is_http_client_error(error: BaseException) -> bool:
    return any(cls.__name__ == "HTTPClientError" for cls in type(error).__mro__)


@functools.cache
def _botocore_local_errors() -> tuple[type[BaseException], ...]:
    # Only looked up once a report has failed: botocore stays off the hot path.
    try:
        import botocore.exceptions  # noqa: PLC0415
    except ImportError:  # pragma: no cover - botocore comes with aiobotocore
        return ()
    return tuple(getattr(botocore.exceptions, name) for name in _REJECTED_LOCAL_ERRORS)


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:80]}…"
