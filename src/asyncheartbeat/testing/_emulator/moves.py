"""The moves: what a test does to the emulated service from outside, written once.

Each move is a method of `Moves` (or, for ``calls``, a function) marked with `move`. The
mark puts it in `MOVES`, a table of its name, its parameters with their types, defaults and
help (from the docstring), and the function; the other faces of the emulator read that
table: the control endpoint answers with `run`, `EmulatorProcess` makes each move with
`remote`, and ``asyncheartbeat emulator ctl`` builds its sub-commands and their help.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio

from asyncheartbeat.testing._faults import Fault, FaultPlan
from asyncheartbeat.testing._service import Attempt, DataPipelineService

from .recording import Call

F = TypeVar("F", bound=Callable[..., Any])

#: The worker group of tasks made with `LocalDataPipeline.add_task`.
DEFAULT_WORKER_GROUP = "asyncheartbeat"


@dataclasses.dataclass(frozen=True, slots=True)
class Parameter:
    """One parameter of a move."""

    name: str
    #: The annotation, resolved: ``str``, ``int | None``, `Fault` ...
    type: Any
    #: ``inspect.Parameter.empty`` for a parameter that must be given.
    default: Any
    help: str

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


@dataclasses.dataclass(frozen=True, slots=True)
class Move:
    """One row of the table."""

    name: str
    #: Called with the `LocalDataPipeline` and the move's arguments.
    function: Callable[..., Any]
    #: The docstring's first sentence.
    help: str
    parameters: tuple[Parameter, ...]
    #: Its ``emulator ctl`` sub-command.
    command: str
    #: The result as the control endpoint answers it.
    to_json: Callable[[Any], Any]


#: Every move, by name, in the order they are defined.
MOVES: dict[str, Move] = {}


def _same(result: Any) -> Any:
    return result


def move(
    *, command: str, name: str | None = None, to_json: Callable[[Any], Any] = _same
) -> Callable[[F], F]:
    """Put the decorated function in `MOVES`; it is returned unchanged."""

    def register(function: F) -> F:
        hints = typing.get_type_hints(function)
        helps = _argument_help(function.__doc__ or "")
        parameters = tuple(
            Parameter(p.name, hints[p.name], p.default, helps[p.name])
            for p in list(inspect.signature(function).parameters.values())[1:]
        )
        summary = inspect.cleandoc(function.__doc__ or "").split("\n\n", 1)[0]
        key = name or function.__name__
        MOVES[key] = Move(key, function, " ".join(summary.split()), parameters, command, to_json)
        return function

    return register


def _argument_help(docstring: str) -> dict[str, str]:
    """The entries of a Google-style docstring's ``Args:`` section, one line each."""
    section = inspect.cleandoc(docstring).partition("\nArgs:\n")[2]
    section = re.split(r"\n(?=\S)", section, maxsplit=1)[0]
    entries = re.findall(r"^    (\w+): (.*(?:\n        .*)*)", section, re.MULTILINE)
    return {name: " ".join(text.split()) for name, text in entries}


def encode(value: object) -> Any:
    """A move's argument as JSON (for ``json.dumps(default=...)``)."""
    if isinstance(value, Fault):
        return value.to_json()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} {value!r} cannot be sent to the emulator")


def run(dp: Moves, name: str, arguments: dict[str, Any]) -> Any:
    """Make the move ``name`` with its JSON arguments; its result as JSON."""
    found = MOVES.get(name)
    if found is None:
        raise ValueError(f"unknown control command {name!r}")
    types = {p.name: p.type for p in found.parameters}
    decoded = {
        key: Fault.from_json(value) if types.get(key) is Fault else value
        for key, value in arguments.items()
    }
    return found.to_json(found.function(dp, **decoded))


def _attempt_to_json(attempt: Attempt) -> dict[str, Any]:
    return {**attempt.as_object(), "pipelineId": attempt.pipeline_id}


class Moves:
    """The moves of `LocalDataPipeline`, on its service and its faults."""

    service: DataPipelineService
    faults: FaultPlan

    @move(command="add-pipeline")
    def add_pipeline(
        self,
        *,
        worker_group: str = DEFAULT_WORKER_GROUP,
        command: str = "true",
        report_progress_timeout: str | None = None,
        maximum_retries: int | None = None,
        fields: Sequence[Mapping[str, str]] = (),
    ) -> str:
        """Make and activate a one-activity pipeline whose task waits for the next poller of
        ``worker_group``; return the pipeline id.

        Args:
            worker_group: The worker group whose poller gets the task.
            command: The ShellCommandActivity's ``command``.
            report_progress_timeout: The activity's ``reportProgressTimeout``, such as
                ``"10 minutes"``; None for the service's 5 minutes.
            maximum_retries: The activity's ``maximumRetries``: attempts made after FAILED
                (None: 2, as the service says).
            fields: More fields of the activity, in the API's shape, such as
                ``{"key": "scriptArgument", "stringValue": "2026-11-22"}``.

        Returns:
            The pipeline id.

        Raises:
            ValueError: The options make a definition the service would refuse.
        """
        name = f"task-{uuid.uuid4().hex[:12]}"
        pipeline_id = self.service.create_pipeline(name, name)
        activity = [
            {"key": "type", "stringValue": "ShellCommandActivity"},
            {"key": "command", "stringValue": command},
            {"key": "workerGroup", "stringValue": worker_group},
        ]
        if report_progress_timeout is not None:
            activity.append(
                {"key": "reportProgressTimeout", "stringValue": report_progress_timeout}
            )
        if maximum_retries is not None:
            activity.append({"key": "maximumRetries", "stringValue": str(maximum_retries)})
        activity += [dict(field) for field in fields]
        result = self.service.put_definition(
            pipeline_id, [{"id": "Activity", "name": "Activity", "fields": activity}], [], []
        )
        if result["errored"]:
            raise ValueError(f"bad task options: {result['validationErrors']}")
        self.service.activate(pipeline_id)
        return pipeline_id

    @move(command="add-task")
    def add_task(
        self,
        task_id: str | None = None,
        *,
        worker_group: str = DEFAULT_WORKER_GROUP,
        report_progress_timeout: str | None = None,
        maximum_retries: int | None = None,
    ) -> str:
        """Make a one-activity pipeline, activate it, and hand its task out as PollForTask
        would; return the task id. For tests that do not care about pipelines or polls.

        Args:
            task_id: The task id to hand it out under; None for a new one.
            worker_group: The activity's worker group.
            report_progress_timeout: As for `add_pipeline`.
            maximum_retries: As for `add_pipeline`.

        Returns:
            The task id.
        """
        pipeline_id = self.add_pipeline(
            worker_group=worker_group,
            report_progress_timeout=report_progress_timeout,
            maximum_retries=maximum_retries,
        )
        task = self.service.take_task(
            worker_group,
            "localhost",
            anyio.current_time(),
            task_id=task_id,
            pipeline_id=pipeline_id,
        )
        assert task is not None
        return str(task["taskId"])

    @move(command="cancel")
    def cancel_task(self, task_id: str) -> None:
        """Cancel the task's attempt (SetStatus CANCEL): its next report answers canceled.

        Args:
            task_id: A task id this server handed out.
        """
        attempt = self.attempt(task_id)
        self.service.set_status(attempt.pipeline_id, [attempt.attempt_id], "CANCEL")

    @move(command="forget")
    def forget_task(self, task_id: str) -> None:
        """Take the task back as a reassignment does: its reports get TaskNotFoundException.

        Args:
            task_id: A task id this server handed out.
        """
        self.service.forget(task_id)

    @move(command="delete")
    def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete a pipeline: reports for its tasks get PipelineDeletedException.

        Args:
            pipeline_id: The pipeline.
        """
        self.service.delete(pipeline_id)

    @move(command="terminate")
    def set_terminate(self, terminate: bool = True, *, taskrunner_id: str | None = None) -> None:
        """Say what ReportTaskRunnerHeartbeat answers, for every runner or for one.

        Args:
            terminate: The ``terminate`` to answer; False answers terminate: false again.
            taskrunner_id: The runner it is for; None for every runner.
        """
        if taskrunner_id is None:
            self.service.terminate_all = terminate
        elif terminate:
            self.service.terminate_runners.add(taskrunner_id)
        else:
            self.service.terminate_runners.discard(taskrunner_id)

    @move(command="fault")
    def inject(
        self,
        fault: Fault,
        *,
        operation: str | None = "ReportTaskProgress",
        task_id: str | None = None,
        pipeline_id: str | None = None,
        times: int | None = 1,
        probability: float = 1.0,
        every: int = 1,
    ) -> None:
        """Meet matching calls with a fault instead of answering. Faults are consulted in
        the order they were added.

        Args:
            fault: What to do instead of answering.
            operation: The operation it meets; None for any.
            task_id: The task whose calls it meets; None for any.
            pipeline_id: The pipeline whose tasks' calls it meets; None for any.
            times: How many matching calls it meets; None for all of them.
            probability: The chance that it meets each matching call, drawn from the
                server's ``seed``.
            every: Meet only every n-th matching call (the n-th, the 2n-th ...); the
                others are answered as if it were not there.
        """
        self.faults.add(
            fault,
            operation=operation,
            task_id=task_id,
            pipeline_id=pipeline_id,
            times=times,
            probability=probability,
            every=every,
        )

    @move(command="clear-faults")
    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self.faults.clear()

    @move(command="attempt", to_json=_attempt_to_json)
    def attempt(self, task_id: str) -> Attempt:
        """The attempt a task was handed out for, as of now (a lease that ran out since the
        last call shows as TIMEDOUT).

        Args:
            task_id: A task id this server handed out.

        Returns:
            The attempt: its status, fields, pipeline and errors.

        Raises:
            KeyError: No such task was handed out here.
        """
        self.service.expire(anyio.current_time())
        try:
            return self.service.handed_out[task_id]
        except KeyError:
            raise KeyError(f"no task {task_id!r} was handed out here") from None


@move(command="calls", name="calls", to_json=lambda calls: [call.to_json() for call in calls])
def every_call(dp: Any) -> list[Call]:
    """Every call received, in order of arrival (one JSON object a line)."""
    calls: list[Call] = dp.calls
    return calls
