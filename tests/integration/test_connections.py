"""Connection limits on the serving path `convoy serve` takes (server/serving.py's Config):
half-sent requests are closed after header_timeout_s while other requests go on being answered,
and past max_connections a new connection gets 503 in the error shape, at once."""

from __future__ import annotations

import asyncio
import http.client
import json
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect

from server.app import create_app
from tests.support.fake_model import FakeModel, fake_vector, mentions
from tests.support.live_server import LiveServer, serving_server
from tests.support.settings import make_settings

pytestmark = pytest.mark.integration

HEADER_TIMEOUT_S = 1.5
HALF_OPEN = 1000
CAP = 3
# Each half-open socket costs two descriptors here: the client's and the server's end.
FDS_NEEDED = 2 * HALF_OPEN + 256


@pytest.fixture(scope="module")
def gate() -> threading.Event:
    """Batches mentioning "slow" wait on it; everything else runs at once."""
    return threading.Event()


@pytest.fixture(scope="module")
def model(gate: threading.Event) -> FakeModel:
    return FakeModel(gate=gate, gate_if=mentions("slow"))


@pytest.fixture(scope="module")
def server(model: FakeModel) -> Iterator[LiveServer]:
    settings = make_settings(header_timeout_s=HEADER_TIMEOUT_S, log_level="warning", access_log=False)
    with serving_server(create_app(settings, model_factory=lambda _: model), settings) as live:
        yield live


@pytest.fixture(scope="module")
def capped(model: FakeModel) -> Iterator[LiveServer]:
    settings = make_settings(max_connections=CAP, log_level="warning", access_log=False)
    with serving_server(create_app(settings, model_factory=lambda _: model), settings) as live:
        yield live


@pytest.fixture
def enough_fds() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= FDS_NEEDED:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < FDS_NEEDED:
        pytest.skip(f"needs {FDS_NEEDED} file descriptors; the hard limit (ulimit -Hn) is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (FDS_NEEDED, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def half_open(port: int) -> socket.socket:
    """A connection that sends half a request line and then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /predict HTT")
    sock.setblocking(False)
    return sock


def read_eof(sock: socket.socket) -> bytes | None:
    """b"" (or b"" for a reset) once the server closed `sock`; None while it is open."""
    try:
        return sock.recv(4096)
    except BlockingIOError:
        return None
    except ConnectionResetError:
        return b""


def wait_closed(
    socks: dict[socket.socket, float], deadline_s: float, meanwhile: Callable[[], None] = lambda: None
) -> dict[socket.socket, float]:
    """When the server closed each socket (`socks` maps socket -> when it was opened), calling
    `meanwhile` between polls. Fails at the deadline."""
    closed: dict[socket.socket, float] = {}
    deadline = time.monotonic() + deadline_s
    with selectors.DefaultSelector() as sel:
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        while len(closed) < len(socks):
            assert time.monotonic() < deadline, f"{len(socks) - len(closed)} connections still open"
            for key, _ in sel.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = read_eof(sock)
                if data is None:
                    continue
                assert data == b"", f"the server answered instead of closing: {data[:80]!r}"
                closed[sock] = time.monotonic()
                sel.unregister(sock)
            meanwhile()
    return closed


def get(sock: socket.socket, path: str = "/health") -> http.client.HTTPResponse:
    """One keep-alive request on a raw socket, its response read in full."""
    sock.setblocking(True)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: convoy\r\n\r\n".encode())
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return read_eof(sock) is None
    finally:
        sock.setblocking(True)


@pytest.mark.usefixtures("enough_fds")
def test_half_sent_requests_are_closed_while_requests_go_on(server: LiveServer) -> None:
    keep_alive = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    assert get(keep_alive).status == 200

    answered: list[float] = []

    def one_request() -> None:
        if len(answered) >= 300:  # bounded, whatever the timing
            return
        text = f"request {len(answered)}"
        r = httpx.post(f"{server.url}/predict", json={"text": text}, timeout=10)  # a new connection
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["predictions"][0]["embedding"], fake_vector(text))
        answered.append(time.monotonic())

    socks: dict[socket.socket, float] = {}
    try:
        for _ in range(HALF_OPEN):
            opened = time.monotonic()
            socks[half_open(server.port)] = opened
            if len(socks) % 100 == 0:
                one_request()  # accepted and answered while the half-open ones pile up
        closed = wait_closed(socks, deadline_s=60, meanwhile=one_request)
    finally:
        for sock in socks:
            sock.close()

    # Every one was held for the timeout (none dropped early), then closed by the server.
    early = [closed[s] - socks[s] for s in socks if closed[s] - socks[s] < HEADER_TIMEOUT_S - 0.05]
    assert not early, f"{len(early)} closed before the timeout (after {min(early):.2f} s)"
    first_close = min(closed.values())
    assert sum(t < first_close for t in answered) >= HALF_OPEN // 100  # while all were held
    assert sum(t > first_close for t in answered) >= 1  # and while they were being closed
    # The keep-alive connection sat idle for longer than the timeout: idle time is keep_alive_s's.
    assert still_open(keep_alive)
    assert get(keep_alive).status == 200
    # A next request that stops half-way is timed from its first byte.
    keep_alive.sendall(b"GET /health HT")
    sent = time.monotonic()
    keep_alive.setblocking(False)
    closed_at = wait_closed({keep_alive: sent}, deadline_s=30)[keep_alive]
    assert closed_at - sent >= HEADER_TIMEOUT_S - 0.05
    keep_alive.close()


def test_headers_without_a_body_are_closed_too(server: LiveServer) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = (
        b"POST /predict HTTP/1.1\r\nHost: convoy\r\nContent-Type: application/json\r\nContent-Length: 40\r\n"
    )
    sock.sendall(head + b'\r\n{"text": ')  # the headers, and 9 of the body's 40 bytes
    opened = time.monotonic()
    sock.setblocking(False)
    closed_at = wait_closed({sock: opened}, deadline_s=30)[sock]
    assert closed_at - opened >= HEADER_TIMEOUT_S - 0.05
    sock.close()


@pytest.mark.parametrize(
    ("route", "text", "answer"),
    [("/predict", "slow one", '"predictions"'), ("/stream", "slow two", "event: done")],
)
def test_a_slow_answer_is_not_cut(
    server: LiveServer, model: FakeModel, gate: threading.Event, route: str, text: str, answer: str
) -> None:
    gate.clear()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.post, f"{server.url}{route}", json={"text": text}, timeout=60)
        deadline = time.monotonic() + 30
        while text not in model.seen:  # the request arrived and is computing
            assert time.monotonic() < deadline and not pending.done(), "the request never reached the model"
            time.sleep(0.01)
        # A clock: a connection opened now is closed once the timeout has passed.
        clock = half_open(server.port)
        wait_closed({clock: time.monotonic()}, deadline_s=30)
        clock.close()
        assert not pending.done()
        gate.set()
        r = pending.result(timeout=30)
    assert r.status_code == 200, r.text
    assert answer in r.text and "error" not in r.text  # the whole answer (SSE: up to `done`)


async def test_a_websocket_outlives_the_timeout(server: LiveServer) -> None:
    async with connect(server.url.replace("http://", "ws://") + "/ws") as ws:
        clock = half_open(server.port)
        await asyncio.to_thread(wait_closed, {clock: time.monotonic()}, 30)
        clock.close()
        await ws.send(json.dumps({"text": "still here", "id": "a"}))
        events = []
        while not events or events[-1]["event"] not in ("done", "error"):
            events.append(json.loads(await ws.recv()))
    assert events[-1]["event"] == "done", events


def test_past_the_cap_a_connection_gets_503_at_once(capped: LiveServer) -> None:
    held = [socket.create_connection(("127.0.0.1", capped.port), timeout=10) for _ in range(CAP)]
    try:
        for sock in held:
            assert get(sock).status == 200  # accepted, answered, and kept open
        # One more connection is answered before it even sends a request...
        extra = socket.create_connection(("127.0.0.1", capped.port), timeout=10)
        refused = http.client.HTTPResponse(extra)
        refused.begin()
        body = json.loads(refused.read())
        assert refused.status == 503 and refused.getheader("retry-after") == "1"
        assert refused.getheader("content-type") == "application/json"
        assert refused.getheader("connection") == "close"
        assert body["error"]["code"] == "too_many_connections"
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert extra.recv(1) == b""  # ...and closed
        extra.close()
        # A client that sends its request first reads the same answer.
        r = httpx.get(f"{capped.url}/health", timeout=10)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "too_many_connections"
        # Once a connection closes, there is room again.
        held.pop().close()
        deadline = time.monotonic() + 10
        while httpx.get(f"{capped.url}/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "no room after a connection closed"
            time.sleep(0.02)
    finally:
        for sock in held:
            sock.close()
