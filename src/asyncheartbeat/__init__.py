"""Keep an AWS Data Pipeline task alive while async job code runs."""

from ._client import ProgressClient
from ._errors import CancelReason, HeartbeatError, TaskCancelled
from ._heartbeat import Heartbeat, run_with_heartbeat
from ._runner import TaskEvent, TaskFailed, TaskRunner
from ._task import PipelineObject, Task

__all__ = [
    "CancelReason",
    "Heartbeat",
    "HeartbeatError",
    "PipelineObject",
    "ProgressClient",
    "Task",
    "TaskCancelled",
    "TaskEvent",
    "TaskFailed",
    "TaskRunner",
    "run_with_heartbeat",
]
