"""Faults the local Data Pipeline injects into its answers, scripted per operation and task."""

from __future__ import annotations

import dataclasses
import enum
import json
import random
from typing import Any

#: The services' own words for the two auth refusals.
EXPIRED_TOKEN_MESSAGE = "The security token included in the request is expired"
INVALID_SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method."
)


class FaultKind(enum.StrEnum):
    """What a `Fault` does; each has a `Fault` class method that makes one.

    Attributes:
        ERROR: Answer with the service's error shape (`Fault.error`, `Fault.expired_token`,
            `Fault.invalid_signature`).
        HANG: Never answer (`Fault.hang`).
        DROP: Close the connection without an answer (`Fault.drop`).
        DELAY: Answer normally, late (`Fault.delay`).
        MALFORMED: Answer 200 with a body that is not JSON (`Fault.malformed`).
        ANSWER: Answer 200 with a JSON value of your choosing (`Fault.answer`).
    """

    ERROR = "error"
    HANG = "hang"
    DROP = "drop"
    DELAY = "delay"
    MALFORMED = "malformed"
    ANSWER = "answer"


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """One way to misbehave. Build it with the class methods: ``Fault.error("Throttling")``.

    Give it to `LocalDataPipeline.inject` or `EmulatorProcess.inject`, which choose the
    calls it meets.

    Attributes:
        kind: What it does.
        code: The error code, for ``ERROR``.
        status: The HTTP status, for ``ERROR``.
        message: The error message, for ``ERROR``.
        seconds: How late, for ``DELAY``.
        body: The JSON value an ``ANSWER`` fault sends instead of the service's answer.
    """

    kind: FaultKind
    code: str = ""
    status: int = 400
    message: str = ""
    seconds: float = 0.0
    #: The JSON value an ``answer`` fault sends instead of the service's answer.
    body: Any = None

    @classmethod
    def error(cls, code: str, *, status: int | None = None, message: str = "") -> Fault:
        """Answer with the service's error shape, ``{"__type": code, "message": message}``.

        Args:
            code: The error code, such as ``"ThrottlingException"`` or
                ``"InternalServiceError"``.
            status: The HTTP status, 400 to 599. Default: 500 for InternalServiceError and
                400 otherwise, as the service does.
            message: The message. Default: ``"injected <code>"``.

        Returns:
            The fault.

        Raises:
            ValueError: No code, or a status outside 400 to 599.
        """
        if not code:
            raise ValueError("an error fault needs an error code")
        if status is None:
            status = 500 if code == "InternalServiceError" else 400
        if not 400 <= status <= 599:
            raise ValueError(f"an error answer needs a 4xx or 5xx status, not {status}")
        return cls(FaultKind.ERROR, code=code, status=status, message=message or f"injected {code}")

    @classmethod
    def expired_token(cls) -> Fault:
        """Refuse the call as the service refuses expired credentials: ExpiredTokenException,
        HTTP 400."""
        return cls.error("ExpiredTokenException", message=EXPIRED_TOKEN_MESSAGE)

    @classmethod
    def invalid_signature(cls) -> Fault:
        """Refuse the call as the service refuses a bad signature: InvalidSignatureException,
        HTTP 400."""
        return cls.error("InvalidSignatureException", message=INVALID_SIGNATURE_MESSAGE)

    @classmethod
    def hang(cls) -> Fault:
        """Never answer (until the server stops)."""
        return cls(FaultKind.HANG)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without an answer."""
        return cls(FaultKind.DROP)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally, late.

        Args:
            seconds: How late, at least 0.

        Returns:
            The fault.

        Raises:
            ValueError: A negative delay.
        """
        if not seconds >= 0:
            raise ValueError(f"a delay needs a number of seconds >= 0, not {seconds!r}")
        return cls(FaultKind.DELAY, seconds=seconds)

    @classmethod
    def malformed(cls) -> Fault:
        """Answer 200 with a body that is not JSON."""
        return cls(FaultKind.MALFORMED)

    @classmethod
    def answer(cls, body: Any) -> Fault:
        """Answer 200 with ``body`` instead of what the service would say.

        Args:
            body: Any JSON value: a task object missing its ids, a ``canceled`` that is not
                a boolean, a list.

        Returns:
            The fault.

        Raises:
            TypeError: ``body`` cannot be written as JSON.
        """
        try:
            json.dumps(body)
        except (TypeError, ValueError) as error:
            raise TypeError(f"an answer fault needs a JSON value as its body: {error}") from None
        return cls(FaultKind.ANSWER, body=body)

    def to_json(self) -> dict[str, Any]:
        """The fault as JSON, as `EmulatorProcess` sends it to its child."""
        return {**dataclasses.asdict(self), "kind": self.kind.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        """The fault `to_json` wrote.

        Args:
            data: What `to_json` returned.

        Returns:
            The fault.
        """
        return cls(**{**data, "kind": FaultKind(data["kind"])})


@dataclasses.dataclass(slots=True)
class _Injection:
    fault: Fault
    operation: str | None
    task_id: str | None
    pipeline_id: str | None
    remaining: int | None
    probability: float
    every: int
    matched: int = 0


class FaultPlan:
    """Injected faults, consulted in the order they were added; draws come from ``seed``."""

    def __init__(self, seed: int | None = None) -> None:
        self._injections: list[_Injection] = []
        self._random = random.Random(seed)

    def add(
        self,
        fault: Fault,
        *,
        operation: str | None,
        task_id: str | None = None,
        pipeline_id: str | None = None,
        times: int | None = 1,
        probability: float = 1.0,
        every: int = 1,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a whole number of at least 1, not {every!r}")
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 (or None for always), not {times}")
        if not 0 < probability <= 1:
            raise ValueError(f"probability must be in (0, 1], not {probability}")
        self._injections.append(
            _Injection(fault, operation, task_id, pipeline_id, times, probability, every)
        )

    def clear(self) -> None:
        self._injections.clear()

    def take(self, operation: str, task_id: str | None, pipeline_id: str | None) -> Fault | None:
        """The fault for this request, if one applies; a counted fault is used up."""
        for injection in self._injections:
            if injection.operation not in (None, operation):
                continue
            if injection.task_id not in (None, task_id):
                continue
            if injection.pipeline_id not in (None, pipeline_id):
                continue
            injection.matched += 1
            if injection.matched % injection.every:
                continue
            if injection.probability < 1 and self._random.random() >= injection.probability:
                continue
            if injection.remaining is not None:
                injection.remaining -= 1
                if injection.remaining == 0:
                    self._injections.remove(injection)
            return injection.fault
        return None
