"""Test against a local Data Pipeline: a real endpoint over HTTP, or an in-memory client.

Names are imported on first use: the pytest plugin lives in this package, and pytest loads
it in every run where asyncheartbeat is installed, so importing the package must not import
aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._errors import ServiceError
    from ._faults import Fault, FaultKind
    from ._limits import RateLimit
    from ._mock import MockClient, MockServiceError
    from ._process import EmulatorProcess
    from ._server import Call, LocalDataPipeline
    from ._service import Attempt, AttemptStatus, Timeouts

#: Where each public name is defined.
_MODULES = {
    "Attempt": "._service",
    "AttemptStatus": "._service",
    "Call": "._server",
    "EmulatorProcess": "._process",
    "Fault": "._faults",
    "FaultKind": "._faults",
    "LocalDataPipeline": "._server",
    "MockClient": "._mock",
    "MockServiceError": "._mock",
    "RateLimit": "._limits",
    "ServiceError": "._errors",
    "Timeouts": "._service",
}

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


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
