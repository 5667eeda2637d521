"""Structured logging: every record the library logs carries its facts as ``hb_*`` attributes.

The prefix keeps them clear of `logging.LogRecord`'s own attributes and of other libraries'
``extra`` fields; a JSON formatter picks them up from ``record.__dict__``. The names are
listed in `asyncheartbeat.instrumentation.LoggingHook`'s docstring.
"""

from __future__ import annotations

from typing import Any

#: The prefix of every attribute the library sets on its log records.
PREFIX = "hb_"


def fields(event: str, **values: Any) -> dict[str, Any]:
    """``extra=`` for a record: ``hb_event`` and each value not None as ``hb_<name>``.

    Enum values are logged by value (``"lease-lost"``), so that JSON encoders take them.
    """
    extra: dict[str, Any] = {f"{PREFIX}event": event}
    for name, value in values.items():
        if value is not None:
            extra[f"{PREFIX}{name}"] = getattr(value, "value", value)
    return extra


def shorten(text: str, limit: int) -> str:
    """``text``, cut to its first ``limit`` characters and an ellipsis if it is longer."""
    return text if len(text) <= limit else f"{text[:limit]}…"


def one_line(text: object) -> str:
    """``text`` on one line: runs of whitespace (newlines in a service's message) as one space."""
    return " ".join(str(text).split())
