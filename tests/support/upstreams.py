"""Upstream HTTP apps for remote tests: scripted behaviours, an OpenAI-style embeddings endpoint.

Each app records what reached it (requests per path and text, concurrency, embeddings batch
sizes) so tests can assert what the upstream saw, not what Convoy says it sent. It runs in
its own uvicorn thread; the recorder is shared with the test thread under a lock.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.live_server import LiveServer, live_server

SLOW_S = 0.2
EMBED_DIM = 4
BEHAVIOURS = ("fast", "slow", "fail500", "bad400", "limited", "hang", "garbage", "redirect", "gate")


def embed_vector(text: str) -> list[float]:
    """The deterministic 'embedding' the fake OpenAI upstream answers for `text`."""
    return [float(len(text)), float(len(text.split())), float(sum(map(ord, text)) % 97), 1.0]


@dataclass
class Recorder:
    """What reached one upstream. Mutated on the upstream's loop, read from the test thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: Counter[str] = field(default_factory=Counter)  # path -> requests
    texts: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    arrivals: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # text -> times
    active: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)  # path -> most concurrent requests seen
    embed_batches: list[int] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)  # closed: "gate" requests wait
    embed_gate: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.texts.clear()
            self.arrivals.clear()
            self.active.clear()
            self.peak.clear()
            self.embed_batches.clear()
        self.gate.set()
        self.embed_gate.set()

    def total(self) -> int:
        with self.lock:
            return sum(self.requests.values())

    def count(self, path: str) -> int:
        with self.lock:
            return self.requests[path]


def upstream_app(rec: Recorder) -> Starlette:
    async def behave(request: Request) -> Response:
        behaviour = request.path_params["behaviour"]
        body = await request.json()
        text = str(body.get("text", ""))
        if behaviour == "script":  # the text picks the behaviour: --backend remote tests
            behaviour = next((b for b in BEHAVIOURS if b in text), "fast")
        path = request.url.path
        with rec.lock:
            rec.requests[path] += 1
            rec.texts[path].append(text)
            rec.arrivals[text].append(time.monotonic())
            rec.active[path] += 1
            rec.peak[path] = max(rec.peak[path], rec.active[path])
            seen = len(rec.arrivals[text])
        try:
            return await _answer(rec, behaviour, text, seen)
        finally:
            with rec.lock:
                rec.active[path] -= 1

    async def embeddings(request: Request) -> Response:
        body = await request.json()
        inputs = body["input"]
        mode = request.path_params.get("mode")
        with rec.lock:
            rec.requests[request.url.path] += 1
            rec.embed_batches.append(len(inputs))
        if mode == "broken":
            return JSONResponse({"error": "down"}, status_code=500)
        if mode == "picky" and any("bad" in t for t in inputs):
            return JSONResponse({"error": {"message": "bad input"}}, status_code=400)
        await asyncio.to_thread(rec.embed_gate.wait, 30)
        data = [{"index": i, "embedding": embed_vector(t)} for i, t in enumerate(inputs)]
        data.reverse()  # the order of `data` is not promised; `index` is
        return JSONResponse({"object": "list", "data": data, "model": body.get("model"), "usage": {}})

    return Starlette(
        routes=[
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/{mode}/v1/embeddings", embeddings, methods=["POST"]),  # broken: 500; picky: 400
            Route("/{behaviour}", behave, methods=["POST"]),
        ]
    )


async def _answer(rec: Recorder, behaviour: str, text: str, seen: int) -> Response:
    ok = {"echo": text, "length": len(text)}
    if behaviour == "slow":
        await asyncio.sleep(SLOW_S)  # the upstream's own latency, not test synchronisation
    elif behaviour == "fail500":
        return JSONResponse({"error": "boom"}, status_code=500)
    elif behaviour == "bad400":
        return JSONResponse({"error": "bad input"}, status_code=400)
    elif behaviour == "limited" and seen == 1:
        return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "1"})
    elif behaviour == "hang":
        await asyncio.Event().wait()  # never answers; ended by the client or by shutdown
    elif behaviour == "garbage":
        return Response(b"{not json", media_type="application/json")
    elif behaviour == "redirect":
        return Response(status_code=307, headers={"location": "/fast"})
    elif behaviour == "gate":
        await asyncio.to_thread(rec.gate.wait, 30)
    return JSONResponse(ok)


@dataclass
class Upstream:
    server: LiveServer
    rec: Recorder

    @property
    def url(self) -> str:
        return self.server.url


@contextmanager
def run_upstream() -> Iterator[Upstream]:
    rec = Recorder()
    # Hanging handlers never end by themselves: let shutdown cancel them after a second.
    with live_server(upstream_app(rec), timeout_graceful_shutdown=1) as server:
        try:
            yield Upstream(server, rec)
        finally:
            rec.gate.set()
            rec.embed_gate.set()


def refused_url() -> str:
    """A loopback URL where nothing listens (the port was just free)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
