"""The seam between the reporter and a lease service: what one call came to (answered,
transient, or final with its reason), and what the reporter asks of a service.

The reporter decides everything from these; only the service's adapter (for Data Pipeline,
`asyncheartbeat._datapipeline`) knows how its answers and errors read. Another lease
service (Step Functions' SendTaskHeartbeat, SQS's ChangeMessageVisibility) would be another
adapter, with the reporter untouched.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, Protocol, TypeAlias

from asyncheartbeat._errors import CancelReason


@dataclasses.dataclass(frozen=True, slots=True)
class Final:
    """The call failed for good: the work ends for ``reason``."""

    reason: CancelReason
    description: str
    error: BaseException | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Answered:
    """The service answered: the lease is renewed from ``sent_at``, and ``stop`` says why the
    work must end all the same (Data Pipeline's ``canceled: true``), if it must."""

    response: Mapping[str, Any]
    sent_at: float
    answered_at: float
    stop: Final | None = None


class Cut(enum.Enum):
    """Why the call machinery ended an attempt unanswered."""

    #: Its deadline passed (for a report, the end of the lease).
    DEADLINE = "deadline"
    #: Another attempt of the same request was answered, or decided it.
    SUPERSEDED = "superseded"


@dataclasses.dataclass(frozen=True, slots=True)
class Transient:
    """The call did not go through, and trying again may succeed."""

    description: str
    error: BaseException | None = None
    #: The service refused the call for the client's rate: wait for a turn, do not retry.
    throttled: bool = False
    #: Seconds the service asked the client to wait before the next call (a retry-after
    #: header), if it said.
    retry_after: float | None = None
    cut: Cut | None = None
    #: The service refused the caller (credentials, signature, permissions): one such answer
    #: may be a blip, and is retried; the same answer again ends the work for this reason.
    refusal: CancelReason | None = None


Outcome: TypeAlias = Answered | Transient | Final


class LeaseService(Protocol):
    """What the reporter needs of a lease service's adapter."""

    #: The client the calls go through.
    client: Any
    #: The operation that renews a lease.
    renew_operation: str
    #: A lease handed out must be renewed once within this many seconds, whatever its length.
    acknowledge_within: float

    def renewal(self, task_id: str, fields: list[dict[str, str]]) -> dict[str, Any]:
        """The parameters of the call that renews ``task_id``'s lease."""
        ...

    async def send(self, operation: str, params: Mapping[str, Any]) -> Any:
        """One call: the client's answer, or its exception as raised (`HeartbeatError` for a
        mistake no retry can mend)."""
        ...

    def read_answer(self, operation: str, response: object) -> Final | Transient | None:
        """What an answer means: go on (None), stop (a `Final`), or malformed (`Transient`)."""
        ...

    def read_error(self, error: Exception) -> Transient | Final:
        """What an exception the client raised means."""
        ...
