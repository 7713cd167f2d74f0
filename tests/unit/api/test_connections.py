"""The receive timer and the cap of server/api/connections.py, over both of uvicorn's HTTP/1.1
protocols, driven byte by byte through an in-memory transport on a real event loop."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from server.api.connections import ConnectionLimits, HttpImpl, limited_http_protocol

LONG_S = 3600.0  # a timer that must not fire during a test


class MemoryTransport(asyncio.Transport):
    """What the protocol writes and whether it closed; the test plays the client."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.wrote = asyncio.Event()
        self.closed = asyncio.Event()
        self.eof_written = False
        self._protocol: asyncio.BaseProtocol | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data
        self.wrote.set()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def is_closing(self) -> bool:
        return self.closed.is_set()

    def close(self) -> None:
        self.closed.set()

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, then answers 200."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def connect(
    impl: HttpImpl, *, timeout_s: float = LONG_S, cap: int | None = None, state: ServerState | None = None
) -> tuple[Any, MemoryTransport]:
    config = uvicorn.Config(ok_app, log_level="warning", lifespan="off")
    config.load()
    protocol_class = limited_http_protocol(ConnectionLimits(timeout_s, cap), impl)
    protocol = protocol_class(config=config, server_state=state or ServerState(), app_state={})  # type: ignore[call-arg]
    transport = MemoryTransport()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    return protocol, transport


async def answered(transport: MemoryTransport) -> None:
    """Until the app's 200 is written (the ASGI task runs on this loop)."""
    async with asyncio.timeout(10):
        while b"\r\n\r\nok" not in transport.written:
            transport.wrote.clear()
            await transport.wrote.wait()


IMPLS: list[HttpImpl] = ["httptools", "h11"]


def count_calls(obj: object, name: str) -> list[None]:
    """Calls to `obj.name` from now on, one entry each (the method still runs)."""
    calls: list[None] = []
    method = getattr(obj, name)

    def counted() -> None:
        calls.append(None)
        method()

    setattr(obj, name, counted)
    return calls


@pytest.mark.parametrize("impl", IMPLS)
async def test_the_timer_covers_only_receiving_each_request(impl: HttpImpl) -> None:
    protocol, transport = connect(impl)
    armed = protocol._receive_timer
    assert armed is not None  # from the connection's opening

    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\n")
    assert protocol._receive_timer is armed  # more bytes do not restart it
    protocol.data_received(b"Content-Length: 4\r\n\r\nab")
    assert protocol._receive_timer is armed  # headers in, body not yet
    protocol.data_received(b"cd")
    assert protocol._receive_timer is None  # received: the app's time is not counted
    await answered(transport)
    assert protocol._receive_timer is None  # idle keep-alive is uvicorn's timeout_keep_alive

    transport.written.clear()
    protocol.data_received(b"GET / HT")
    assert protocol._receive_timer is not None  # armed again by the next request's first byte
    protocol.data_received(b"TP/1.1\r\nHost: x\r\n\r\n")
    assert protocol._receive_timer is None
    await answered(transport)
    assert not transport.is_closing()

    # A request that arrives whole in one read needs no timer at all.
    transport.written.clear()
    arms = count_calls(protocol, "_start_timer")
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert protocol._receive_timer is None and arms == []
    await answered(transport)

    # Its headers whole in the first read, its body not: timed until the body is in.
    transport.written.clear()
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
    assert protocol._receive_timer is not None and len(arms) == 1
    protocol.data_received(b"cd")
    assert protocol._receive_timer is None
    await answered(transport)
    assert not transport.is_closing()


@pytest.mark.parametrize("impl", IMPLS)
async def test_a_request_that_stops_is_closed(impl: HttpImpl) -> None:
    protocol, transport = connect(impl, timeout_s=0.05)
    protocol.data_received(b"POST /predict HTT")
    async with asyncio.timeout(10):
        await transport.closed.wait()
    assert transport.written == b""  # no response can be framed for a request that never came


@pytest.mark.parametrize("impl", IMPLS)
async def test_a_silent_connection_is_closed(impl: HttpImpl) -> None:
    _, transport = connect(impl, timeout_s=0.05)
    async with asyncio.timeout(10):
        await transport.closed.wait()


@pytest.mark.parametrize("impl", IMPLS)
async def test_past_the_cap_a_connection_is_answered_and_not_counted(impl: HttpImpl) -> None:
    state = ServerState()
    first, _ = connect(impl, cap=1, state=state)
    assert state.connections == {first}
    refused, transport = connect(impl, cap=1, state=state)
    assert state.connections == {first}  # never joins: it is not served
    head, _, body = bytes(transport.written).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"retry-after: 1" in head.lower() and b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == "too_many_connections"
    assert transport.eof_written and not transport.is_closing()  # half-closed: the client reads it
    refused.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # read and dropped
    assert refused.eof_received() is None  # the client closed: asyncio closes the transport
    refused.connection_lost(None)
