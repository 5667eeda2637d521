"""Keep an AWS Data Pipeline task alive while async job code runs."""

from ._client import ProgressClient
from ._errors import CancelReason, HeartbeatError, TaskCancelled
from ._heartbeat import Heartbeat, run_with_heartbeat

__all__ = [
    "CancelReason",
    "Heartbeat",
    "HeartbeatError",
    "ProgressClient",
    "TaskCancelled",
    "run_with_heartbeat",
]
