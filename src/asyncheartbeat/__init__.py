"""Keep an AWS Data Pipeline task alive while async job code runs."""

import logging

from ._call_layer import CallLayer, client_config
from ._client import ProgressClient
from ._errors import CancelReason, HeartbeatError, TaskStopped
from ._heartbeat import Heartbeat, run_with_heartbeat
from ._runner import FailTask, PreconditionFalse, TaskEvent, TaskRunner
from ._task import PipelineObject, Task
from ._threaded import ThreadedClient

__all__ = [
    "CallLayer",
    "CancelReason",
    "FailTask",
    "Heartbeat",
    "HeartbeatError",
    "PipelineObject",
    "PreconditionFalse",
    "ProgressClient",
    "Task",
    "TaskEvent",
    "TaskRunner",
    "TaskStopped",
    "ThreadedClient",
    "client_config",
    "run_with_heartbeat",
]

# A library's records go where the application's logging configuration sends them; without
# one, not to stderr through logging.lastResort.
logging.getLogger(__name__).addHandler(logging.NullHandler())
