"""Observe asyncheartbeat as it works: every call's outcome and every verdict, as typed events.

A hook is any callable taking one `Event`. Hooks set here see the events of every
`Reporter`; a reporter's own ``hooks=`` see only its events. Logging is one such hook,
`LoggingHook`, installed by default.
"""

from ._events import Event, EventKind
from ._hooks import Hook, get_hooks, set_hooks
from ._logging import LoggingHook

__all__ = ["Event", "EventKind", "Hook", "LoggingHook", "get_hooks", "set_hooks"]
