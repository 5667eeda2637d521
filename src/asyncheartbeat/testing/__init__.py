"""Test against a local Data Pipeline: a real endpoint over HTTP, or an in-memory client."""

from ._faults import Fault, FaultKind
from ._mock import MockClient, MockServiceError
from ._server import Call, LocalDataPipeline, ServiceError, Task

__all__ = [
    "Call",
    "Fault",
    "FaultKind",
    "LocalDataPipeline",
    "MockClient",
    "MockServiceError",
    "ServiceError",
    "Task",
]
