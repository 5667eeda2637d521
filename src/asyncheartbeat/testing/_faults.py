"""Faults the local Data Pipeline injects into its answers, scripted per operation and task."""

from __future__ import annotations

import dataclasses
import enum


class FaultKind(enum.StrEnum):
    ERROR = "error"
    HANG = "hang"
    DROP = "drop"
    DELAY = "delay"
    MALFORMED = "malformed"


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """One way to misbehave. Build it with the class methods: ``Fault.error("Throttling")``."""

    kind: FaultKind
    code: str = ""
    status: int = 400
    message: str = ""
    seconds: float = 0.0

    @classmethod
    def error(cls, code: str, *, status: int | None = None, message: str = "") -> Fault:
        """Answer with the service's error shape; the status defaults to 500 for
        InternalServiceError and 400 otherwise, as the service does."""
        if not code:
            raise ValueError("an error fault needs an error code")
        if status is None:
            status = 500 if code == "InternalServiceError" else 400
        if not 400 <= status <= 599:
            raise ValueError(f"an error answer needs a 4xx or 5xx status, not {status}")
        return cls(FaultKind.ERROR, code=code, status=status, message=message or f"injected {code}")

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
        """Answer normally, ``seconds`` late."""
        if not seconds >= 0:
            raise ValueError(f"a delay needs a number of seconds >= 0, not {seconds!r}")
        return cls(FaultKind.DELAY, seconds=seconds)

    @classmethod
    def malformed(cls) -> Fault:
        """Answer 200 with a body that is not JSON."""
        return cls(FaultKind.MALFORMED)


@dataclasses.dataclass(slots=True)
class _Injection:
    fault: Fault
    operation: str | None
    task_id: str | None
    remaining: int | None


class FaultPlan:
    """Injected faults, consumed in the order they were added."""

    def __init__(self) -> None:
        self._injections: list[_Injection] = []

    def add(
        self, fault: Fault, *, operation: str | None, task_id: str | None, times: int | None
    ) -> None:
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 (or None for always), not {times}")
        self._injections.append(_Injection(fault, operation, task_id, times))

    def clear(self) -> None:
        self._injections.clear()

    def take(self, operation: str, task_id: str | None) -> Fault | None:
        """The fault for this request, if one is scripted; a counted fault is used up."""
        for injection in self._injections:
            if injection.operation not in (None, operation):
                continue
            if injection.task_id not in (None, task_id):
                continue
            if injection.remaining is not None:
                injection.remaining -= 1
                if injection.remaining == 0:
                    self._injections.remove(injection)
            return injection.fault
        return None
