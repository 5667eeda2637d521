"""Control from another process: one move is one ``POST /_emulator/<move>``, JSON in and out.

`post` is the client, plain HTTP/1.1 over an anyio socket so that it works on any backend
(aiohttp runs on asyncio only); `remote` turns a row of the moves table into an awaited
method of `EmulatorProcess`. The server side is the wire's control endpoint.
"""

from __future__ import annotations

import inspect
import json
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

import anyio
import anyio.abc

from .moves import MOVES, encode

#: Where the control endpoint is.
CONTROL_PREFIX = "/_emulator/"

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class MoveRefused(ValueError):
    """The emulator refused a move: its arguments, or the state of the service."""


async def post(url: str, move: str, arguments: dict[str, Any]) -> Any:
    """Make ``move`` on the emulator at ``url``; its result.

    Raises:
        MoveRefused: The emulator answered with an error.
        OSError: It could not be reached.
    """
    address = urllib.parse.urlsplit(url)
    if address.hostname is None or address.port is None:
        raise ValueError(f"{url!r} names no host and port")
    body = json.dumps(arguments, default=encode).encode()
    request = (
        f"POST {CONTROL_PREFIX}{move} HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n"
    ).encode() + body
    answer = b""
    stream: anyio.abc.ByteStream
    if address.scheme == "https":
        stream = await anyio.connect_tcp(address.hostname, address.port, tls=True)
    else:
        stream = await anyio.connect_tcp(address.hostname, address.port)
    async with stream:
        await stream.send(request)
        async for chunk in stream:  # until the server closes, as asked
            answer += chunk
    head, _, content = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        raise MoveRefused(f"the emulator answered {move} with {answer[:200]!r}")
    try:
        result = json.loads(content)
    except ValueError:
        raise MoveRefused(f"the emulator answered {move} with {head[:200]!r}") from None
    if "error" in result:
        raise MoveRefused(f"the emulator refused {move}: {result['error']}")
    return result["result"]


class _Controlled(Protocol):
    @property
    def url(self) -> str: ...


class Remote(Generic[P, T]):
    """A move of the table as an awaited method of `EmulatorProcess`."""

    def __init__(self, function: Callable[..., Any], from_json: Callable[[Any], T]) -> None:
        self._move = next(m for m in MOVES.values() if m.function is function)
        self._signature = inspect.signature(function)
        self._from_json = from_json
        self.__doc__ = f"`LocalDataPipeline.{self._move.name}`, awaited: {self._move.help}"

    @overload
    def __get__(self, instance: None, owner: type) -> Remote[P, T]: ...
    @overload
    def __get__(self, instance: _Controlled, owner: type) -> Callable[P, Awaitable[T]]: ...
    def __get__(
        self, instance: _Controlled | None, owner: type
    ) -> Remote[P, T] | Callable[P, Awaitable[T]]:
        if instance is None:
            return self

        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            # Checked here, as a call of the function itself would be.
            bound = self._signature.bind(instance, *args, **kwargs)
            arguments = dict(list(bound.arguments.items())[1:])
            return self._from_json(await post(instance.url, self._move.name, arguments))

        call.__name__ = call.__qualname__ = self._move.name
        call.__doc__ = self.__doc__
        return call


@overload
def remote(function: Callable[Concatenate[Any, P], R]) -> Remote[P, R]: ...
@overload
def remote(
    function: Callable[Concatenate[Any, P], Any], from_json: Callable[[Any], T]
) -> Remote[P, T]: ...
def remote(function: Callable[..., Any], from_json: Callable[[Any], Any] | None = None) -> Any:
    """``function``, a move of the table, as an awaited method; its JSON result goes through
    ``from_json`` (as it came, without one)."""
    return Remote(function, from_json or (lambda result: result))
