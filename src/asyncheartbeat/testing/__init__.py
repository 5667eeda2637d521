"""Test against a local Data Pipeline: a real endpoint over HTTP, or an in-memory client.

Names are imported on first use: the pytest plugin lives in this package, and pytest loads
it in every run where asyncheartbeat is installed, so importing the package must not import
aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asyncheartbeat._lazy import lazy_names as _lazy_names

if TYPE_CHECKING:
    from ._emulator.front import LocalDataPipeline
    from ._emulator.process import EmulatorProcess
    from ._emulator.recording import Call
    from ._errors import ServiceError
    from ._faults import Fault, FaultKind
    from ._limits import RateLimit
    from ._mock import MockClient, MockServiceError
    from ._service import Attempt, AttemptStatus, Timeouts

#: Where each public name is defined.
_MODULES = {
    "Attempt": "._service",
    "AttemptStatus": "._service",
    "Call": "._emulator.recording",
    "EmulatorProcess": "._emulator.process",
    "Fault": "._faults",
    "FaultKind": "._faults",
    "LocalDataPipeline": "._emulator.front",
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


__getattr__, __dir__ = _lazy_names(__name__, _MODULES, globals())
