"""Recording: every call the emulator received, and waiting for more to arrive."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import anyio

from asyncheartbeat.testing._faults import Fault, FaultKind


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """One request the server received.

    Attributes:
        operation: The API operation, such as ``"PollForTask"``.
        params: The request's parameters, as sent.
        received_at: The anyio clock time of arrival.
        outcome: What the server did: ``"answered"``, ``"delay"`` (answered late),
            ``"error:<Code>"``, ``"hang"``, ``"drop"``, ``"malformed"``, ``"answer"``.
    """

    operation: str
    params: dict[str, Any]
    #: anyio clock time of arrival.
    received_at: float
    #: What the server did: "answered", "delay" (answered late), "error:<Code>", "hang",
    #: "drop", "malformed", "answer".
    outcome: str

    @property
    def task_id(self) -> str | None:
        """The call's ``taskId``, if it has one."""
        task_id = self.params.get("taskId")
        return task_id if isinstance(task_id, str) else None

    @property
    def fields(self) -> dict[str, str]:
        """The reported fields as ``{key: value}`` (string and ref values alike)."""
        return {
            field["key"]: field.get("stringValue", field.get("refValue", ""))
            for field in self.params.get("fields", [])
        }

    def to_json(self) -> dict[str, Any]:
        """The call as JSON, as `EmulatorProcess` receives it."""
        return dataclasses.asdict(self)


def outcome(fault: Fault | None) -> str:
    """A call's `Call.outcome` when it meets ``fault`` (or none)."""
    if fault is None:
        return "answered"
    if fault.kind is FaultKind.ERROR:
        return f"error:{fault.code}"
    return fault.kind.value


def reports_of(task_id: str, calls: list[Call]) -> list[Call]:
    """The ReportTaskProgress calls for ``task_id`` among ``calls``."""
    return [c for c in calls if c.operation == "ReportTaskProgress" and c.task_id == task_id]


class Recording:
    """The calls received, for `LocalDataPipeline` to read back: `calls`, `reports` and
    the waits for more."""

    calls: list[Call]

    def __init__(self, record_calls: bool) -> None:
        self.calls = []
        self._record_calls = record_calls
        self._reports: dict[str, list[Call]] = {}

    def _start_recording(self) -> None:
        # An anyio event needs the event loop: made on entry, not in __init__.
        self._call_arrived = anyio.Event()

    def _record(
        self, operation: str, params: dict[str, Any], outcome: str, received_at: float
    ) -> None:
        call = Call(operation, params, received_at, outcome)
        if self._record_calls:
            self.calls.append(call)
            if operation == "ReportTaskProgress" and call.task_id is not None:
                self._reports.setdefault(call.task_id, []).append(call)
        self._call_arrived.set()
        self._call_arrived = anyio.Event()

    def reports(self, task_id: str) -> list[Call]:
        """The ReportTaskProgress calls received for a task, in order of arrival.

        Args:
            task_id: The task.

        Returns:
            The calls.
        """
        return list(self._reports.get(task_id, ()))

    async def wait_for_calls(self, predicate: Callable[[list[Call]], bool]) -> list[Call]:
        """Wait until ``predicate(calls)`` holds; guard it with a timeout of your own.

        Args:
            predicate: Called with `calls` as each call arrives.

        Returns:
            `calls`, once it holds.
        """
        while not predicate(self.calls):
            await self._call_arrived.wait()
        return self.calls

    async def wait_for_reports(self, task_id: str, count: int) -> list[Call]:
        """Wait until ``count`` reports for a task have arrived; guard it with a timeout.

        Args:
            task_id: The task.
            count: How many reports to wait for.

        Returns:
            All its reports so far.
        """
        while len(reports := self._reports.get(task_id, ())) < count:
            await self._call_arrived.wait()
        return list(reports)

    async def _wait_for_more_calls(self, after: int, longest: float) -> int:
        """Wait (up to ``longest`` seconds) until more than ``after`` calls were received;
        return how many there are: a long poll, for a client in another process."""
        with anyio.move_on_after(longest):
            while len(self.calls) <= after:
                await self._call_arrived.wait()
        return len(self.calls)
