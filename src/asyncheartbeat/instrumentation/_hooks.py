"""The hooks every call layer reports to."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ._events import Event
from ._logging import LoggingHook

#: Anything that takes an `Event`; its return value is ignored.
Hook = Callable[[Event], object]

_hooks: tuple[Hook, ...] = (LoggingHook(),)


def set_hooks(hooks: Iterable[Hook]) -> None:
    """Replace the hooks every layer reports to (by default, one `LoggingHook`)."""
    hooks = tuple(hooks)
    for hook in hooks:
        if not callable(hook):
            raise TypeError(f"a hook must be callable, got {type(hook).__name__}")
    global _hooks  # noqa: PLW0603 - the one process-wide setting, as stamina's
    _hooks = hooks


def get_hooks() -> tuple[Hook, ...]:
    """The hooks every layer reports to."""
    return _hooks
