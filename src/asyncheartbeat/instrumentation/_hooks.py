"""The hooks every call layer reports to."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from ._events import Event
from ._logging import LoggingHook


class Hook(Protocol):
    """Anything called with each `Event`: a function, a bound method, an object with
    ``__call__``.

    Its return value is ignored; an exception it raises is logged and ignored, so that an
    observer never breaks the calls it observes. Hooks run in the event loop, inside the
    call that made the event: keep them quick.
    """

    def __call__(self, event: Event, /) -> object: ...


_hooks: tuple[Hook, ...] = (LoggingHook(),)


def set_hooks(hooks: Iterable[Hook]) -> None:
    """Replace the hooks every layer reports to (by default, one `LoggingHook`).

    ```python
    set_hooks([LoggingHook(), metrics.record])  # keep the log lines, add your own
    ```

    Args:
        hooks: The new hooks, in the order they are called. An empty list silences
            asyncheartbeat's logging too.

    Raises:
        TypeError: A hook is not callable.
    """
    hooks = tuple(hooks)
    for hook in hooks:
        if not callable(hook):
            raise TypeError(f"a hook must be callable, got {type(hook).__name__}")
    global _hooks  # noqa: PLW0603 - the one process-wide setting, as stamina's
    _hooks = hooks


def get_hooks() -> tuple[Hook, ...]:
    """The hooks every layer reports to.

    Returns:
        The hooks `set_hooks` set, in order.
    """
    return _hooks
