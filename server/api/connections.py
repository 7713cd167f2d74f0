"""Connection limits uvicorn lacks: a deadline for receiving each request, and a connection cap.

uvicorn closes idle keep-alive connections (`timeout_keep_alive`), but a connection that sends
nothing, or half a request line, or headers without their end, is held forever: 2,000 such
sockets were all still open after 70 s. Its `limit_concurrency` answers text/plain 503 only once
a request's headers arrived, so it cannot help against them either. These subclasses of uvicorn's
two HTTP/1.1 protocols add both limits (passed as `uvicorn.Config(http=...)` by server/serving.py).
They also tell a waiting handler when its client goes away (`call_on_disconnect`), which is
cheaper than a task per request waiting on the ASGI channel.

All of it runs on the event loop thread, like the protocol it extends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

import orjson
from starlette.types import Receive
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from server.errors import TooManyConnections

log = logging.getLogger("convoy.connections")

# How long a refused connection may stay open after its 503, for the client to read it (see
# _refuse). Short: refused connections are not counted against the cap while they linger.
REFUSED_LINGER_S = 2.0


@dataclass(frozen=True)
class ConnectionLimits:
    """`header_timeout_s`: most seconds from a connection's opening, or from the first byte of a
    next request on a keep-alive connection, until that request (headers and body) has fully
    arrived. `max_connections`: most connections open at once (None: no cap)."""

    header_timeout_s: float
    max_connections: int | None


class _LimitedConnection(asyncio.Protocol):
    """Mixin over uvicorn's HttpToolsProtocol / H11Protocol (put it first in the bases).

    The receive timer is armed when the connection opens, and again by the first bytes that
    arrive after a request was received, unless that read holds the whole request; it is
    disarmed once the request in progress is fully received. So it never covers the time the
    app takes to answer (a slow /predict, a long /stream) nor a WebSocket after its upgrade, and
    idle keep-alive time between requests stays uvicorn's `timeout_keep_alive`. When it fires,
    the connection is closed: no response could be framed for a request that has not arrived.
    """

    limits: ClassVar[ConnectionLimits]

    # Set by the uvicorn protocol this mixes into (same types there).
    transport: asyncio.Transport
    server_state: ServerState
    loop: asyncio.AbstractEventLoop

    # Called once when the connection is lost while a handler waits on its work (see
    # call_on_disconnect below); None when nothing waits.
    _on_lost: Callable[[], None] | None = None
    _receive_timer: asyncio.TimerHandle | None = None
    # The request cycle that was current when the timer was armed: the one being timed is newer.
    _timed_cycle: object | None = None
    _refused_close: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cap = self.limits.max_connections
        # Checked before this connection joins `server_state.connections`, so `cap` are served.
        if cap is not None and len(self.server_state.connections) >= cap:
            self._refuse(transport, cap)
            return
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._refused_close is not None:
            return  # read and dropped, so closing later sends FIN, not a reset that loses the 503
        if self._receive_timer is not None:
            super().data_received(data)
            if self._request_received() or self._upgraded():
                self._disarm()
            return
        # The first bytes of a next request. Most requests arrive whole in this one read, and then
        # no timer is needed at all: arming and cancelling one per request was ~2% of a request.
        self._timed_cycle = getattr(self, "cycle", None)
        super().data_received(data)
        if not (self._request_received() or self._upgraded()):
            self._start_timer()

    def eof_received(self) -> None:
        # Returning None lets asyncio close the transport: for a refused connection, the client
        # read its 503 and closed; uvicorn's protocols return None too.
        if self._refused_close is None:
            super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._refused_close is not None:
            self._refused_close.cancel()
            return  # never joined uvicorn's bookkeeping
        super().connection_lost(exc)
        on_lost, self._on_lost = self._on_lost, None
        if on_lost is not None:
            on_lost()

    def pause_writing(self) -> None:
        if self._refused_close is None:  # uvicorn's flow control does not exist when refused
            super().pause_writing()

    def resume_writing(self) -> None:
        if self._refused_close is None:
            super().resume_writing()

    # --- the receive timer ---
    def _arm(self) -> None:
        self._timed_cycle = getattr(self, "cycle", None)
        self._start_timer()

    def _start_timer(self) -> None:
        self._receive_timer = self.loop.call_later(self.limits.header_timeout_s, self._receive_timed_out)

    def _disarm(self) -> None:
        if self._receive_timer is not None:
            self._receive_timer.cancel()
            self._receive_timer = None

    def _request_received(self) -> bool:
        # Both uvicorn protocols start a new `cycle` when a request's headers are complete and
        # clear its `more_body` once the body has fully arrived. A pipelined request whose first
        # bytes came in the same read as the end of the one before is timed from the next read;
        # should none come, uvicorn's keep-alive timeout closes the connection after the answer.
        cycle = getattr(self, "cycle", None)
        return cycle is not None and cycle is not self._timed_cycle and not cycle.more_body

    def _upgraded(self) -> bool:
        # A WebSocket upgrade hands the transport to uvicorn's WebSocket protocol.
        return self.transport.get_protocol() is not self

    def _receive_timed_out(self) -> None:
        self._receive_timer = None
        if self._upgraded() or self.transport.is_closing():
            return
        log.debug(
            "closing a connection whose request did not arrive within %ss", self.limits.header_timeout_s
        )
        self.transport.close()

    # --- the cap ---
    def _refuse(self, transport: asyncio.BaseTransport, cap: int) -> None:
        """Answer 503 at once, before reading anything, and never queue the connection.

        The answer goes out first, then the write side is shut (FIN) and what the client sends
        is read and dropped until it closes: closing a socket with unread data sends a reset,
        which can destroy the 503 before the client reads it. REFUSED_LINGER_S bounds the wait.
        """
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = transport = cast(asyncio.Transport, transport)
        log.debug("refusing a connection: %d open (max_connections)", cap)
        transport.write(_refusal(cap, self.server_state.default_headers))
        self._refused_close = self.loop.call_later(REFUSED_LINGER_S, transport.close)
        if transport.can_write_eof():
            transport.write_eof()
        else:  # TLS cannot half-close
            transport.close()


def call_on_disconnect(receive: Receive, callback: Callable[[], None]) -> Callable[[], None] | None:
    """Have the connection call `callback` if its client goes away while the request behind
    `receive` (uvicorn's request cycle) is in progress. Returns the function that takes it back.

    The portable way to learn of a disconnect is a task waiting on `receive`: per request, that is
    a task, a future and a cancellation, a measurable share of a request on the hot routes. Only
    the connection knows without waiting. None when `receive` is not a request in progress on one
    of these connections (another server, a wrapped channel, a client already gone): then the
    caller watches `receive` itself.
    """
    cycle = getattr(receive, "__self__", None)
    # uvloop's transports have asyncio's methods without being its subclasses: asked, not checked.
    get_protocol = getattr(getattr(cycle, "transport", None), "get_protocol", None)
    protocol = get_protocol() if get_protocol is not None else None
    if (
        not isinstance(protocol, _LimitedConnection)
        or getattr(protocol, "cycle", None) is not cycle
        or getattr(cycle, "disconnected", True)
        or protocol._on_lost is not None
    ):
        return None
    protocol._on_lost = callback

    def forget() -> None:
        if protocol._on_lost is callback:
            protocol._on_lost = None

    return forget


def _refusal(cap: int, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    error = TooManyConnections(f"the server holds its maximum of {cap} connections; retry later")
    body = orjson.dumps(error.body())
    lines = [b"HTTP/1.1 503 Service Unavailable"]
    lines += [name + b": " + value for name, value in default_headers]  # server, date
    lines += [name.encode() + b": " + value.encode() for name, value in error.headers().items()]
    lines += [
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class LimitedHttpToolsProtocol(_LimitedConnection, HttpToolsProtocol):
    """uvicorn's httptools protocol (its default when httptools is installed) with the limits."""


class LimitedH11Protocol(_LimitedConnection, H11Protocol):
    """uvicorn's h11 protocol (pure Python) with the limits."""


HttpImpl = Literal["httptools", "h11"]
_IMPLS: dict[HttpImpl, type[_LimitedConnection]] = {
    "httptools": LimitedHttpToolsProtocol,
    "h11": LimitedH11Protocol,
}


def limited_http_protocol(limits: ConnectionLimits, impl: HttpImpl = "httptools") -> type[asyncio.Protocol]:
    """The protocol class to pass as `uvicorn.Config(http=...)`: uvicorn builds one per connection
    with its own arguments, so the limits travel as a class attribute of a subclass."""
    base = _IMPLS[impl]
    attrs: dict[str, Any] = {"limits": limits, "__doc__": base.__doc__}
    return type(base.__name__, (base,), attrs)
