"""Test against a local Data Pipeline: a real endpoint over HTTP, or an in-memory client."""

from ._errors import ServiceError
from ._faults import Fault, FaultKind
from ._limits import RateLimit
from ._mock import MockClient, MockServiceError
from ._process import EmulatorProcess
from ._server import Call, LocalDataPipeline
from ._service import Attempt, AttemptStatus, Timeouts

__all__ = [
    "Attempt",
    "AttemptStatus",
    "Call",
    "EmulatorProcess",
    "Fault",
    "FaultKind",
    "LocalDataPipeline",
    "MockClient",
    "MockServiceError",
    "RateLimit",
    "ServiceError",
    "Timeouts",
]
