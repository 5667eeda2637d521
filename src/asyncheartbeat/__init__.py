"""Keep an AWS Data Pipeline task alive while async job code runs.

Names are imported on first use (see ``_lazy``), so that pytest loading the plugin in
``asyncheartbeat.testing`` does not import the library.
"""

import logging
from typing import TYPE_CHECKING

from ._lazy import lazy_names as _lazy_names

if TYPE_CHECKING:
    from ._datapipeline import ProgressClient, client_config
    from ._errors import CancelReason, HeartbeatError, TaskStopped
    from ._heartbeat import Heartbeat, run_with_heartbeat
    from ._reporter import Reporter
    from ._reporting_thread import ReportingThread
    from ._runner import FailTask, PreconditionFalse, TaskEvent, TaskRunner
    from ._task import PipelineObject, Task
    from ._threaded import ThreadedClient

#: Where each public name is defined.
_MODULES = {
    "CancelReason": "._errors",
    "FailTask": "._runner",
    "Heartbeat": "._heartbeat",
    "HeartbeatError": "._errors",
    "PipelineObject": "._task",
    "PreconditionFalse": "._runner",
    "ProgressClient": "._datapipeline",
    "Reporter": "._reporter",
    "ReportingThread": "._reporting_thread",
    "Task": "._task",
    "TaskEvent": "._runner",
    "TaskRunner": "._runner",
    "TaskStopped": "._errors",
    "ThreadedClient": "._threaded",
    "client_config": "._datapipeline",
    "run_with_heartbeat": "._heartbeat",
}

__all__ = [
    "CancelReason",
    "FailTask",
    "Heartbeat",
    "HeartbeatError",
    "PipelineObject",
    "PreconditionFalse",
    "ProgressClient",
    "Reporter",
    "ReportingThread",
    "Task",
    "TaskEvent",
    "TaskRunner",
    "TaskStopped",
    "ThreadedClient",
    "client_config",
    "run_with_heartbeat",
]

__getattr__, __dir__ = _lazy_names(__name__, _MODULES, globals())

# A library's records go where the application's logging configuration sends them; without
# one, not to stderr through logging.lastResort.
logging.getLogger(__name__).addHandler(logging.NullHandler())
