"""Public names imported on first use (PEP 562).

pytest loads the plugin in ``asyncheartbeat.testing`` in every run where the package is
installed, and importing it imports both packages' ``__init__``: they must import nothing
until a name is used.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, homes: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for ``homes``: each public name, and the
    module (relative to ``package``) it is defined in."""

    def getattr_(name: str) -> Any:
        home = homes.get(name)
        if home is not None:
            value = getattr(importlib.import_module(home, package), name)
        elif not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}"):
            # A subpackage, as `import asyncheartbeat` then `asyncheartbeat.instrumentation`
            # worked when the package imported everything at once.
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *homes})

    return getattr_, dir_
