"""Keep an AWS Data Pipeline task alive while async job code runs."""

from ._call_layer import CallLayer, client_config
from ._client import ProgressClient
from ._errors import CancelReason, HeartbeatError, TaskCancelled
from ._heartbeat import Heartbeat, run_with_heartbeat
from ._runner import PreconditionFalse, TaskEvent, TaskFailed, TaskRunner
from ._task import PipelineObject, Task

__all__ = [
    "CallLayer",
    "CancelReason",
    "Heartbeat",
    "HeartbeatError",
    "PipelineObject",
    "PreconditionFalse",
    "ProgressClient",
    "Task",
    "TaskCancelled",
    "TaskEvent",
    "TaskFailed",
    "TaskRunner",
    "client_config",
    "run_with_heartbeat",
]
