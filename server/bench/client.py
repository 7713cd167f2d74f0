"""The generator's hot path: one aiohttp session per process, and a sender that judges and records answers.

With httpx the generator spent about 1 ms of CPU per request (its connection pool and request and
response models), so one process topped out near 1,000 requests/s against a server that does
nothing; aiohttp, with its C parser, needs about a quarter of that (docs/benchmarks.md, "Load
generator ceiling"). The rest is kept lean too: bodies are serialised before the clock starts,
the URL and headers are fixed per session, no cookie jar, and each answer costs one call into
the `Recorder`, no object of ours per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from server.bench.routes import Malformed, Payload, RouteSpec, parse_json
from server.bench.stats import Recorder

# A connection idle for longer than 1 s is re-opened rather than reused: aiohttp's default (15 s)
# outlives uvicorn's keep-alive timeout (5 s), and reusing a connection the server is closing at
# that moment fails the request (seen at c=256 after the warm-up, while slow requests drain).
_KEEPALIVE_S = 1.0

# (request index, time the request counts from) -> None; the outcome goes into the level's Recorder.
Send = Callable[[int, float], Coroutine[Any, Any, None]]
BatchTotals = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    route: RouteSpec
    payloads: Sequence[Payload]
    timeout_s: float = 60.0
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. Authorization

    def endpoint(self, path: str) -> str:
        return self.url.rstrip("/") + path


def open_session(target: Target, connections: int) -> aiohttp.ClientSession:
    """A session of at most `connections` keep-alive connections; use it as an async context manager.

    The timeout bounds connecting and each wait for the server's bytes, as httpx's did, not the
    whole request: in the open loop a request may wait for a free connection, and that wait is
    latency (counted from its scheduled time), not a timeout.
    """
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=0, keepalive_timeout=_KEEPALIVE_S)
    timeout = aiohttp.ClientTimeout(
        total=None, connect=None, sock_connect=target.timeout_s, sock_read=target.timeout_s
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers={"content-type": "application/json", **target.headers},
        timeout=timeout,
        cookie_jar=aiohttp.DummyCookieJar(),  # no cookie bookkeeping per request
        trust_env=False,  # a proxy from the environment must not sit between bench and server
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _header_ms(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def make_sender(session: aiohttp.ClientSession, target: Target, rec: Recorder) -> Send:
    """`send(index, started)`: POST payload `index`, record a correct answer's latency or the error kind.

    Latency runs from `started` to the last byte of the body; judging the body comes after the
    clock stops, so the generator's own parsing is not counted as the server's latency.
    """
    url, payloads, check = target.endpoint(target.route.path), target.payloads, target.route.check
    count, post, clock = len(payloads), session.post, time.perf_counter
    add_ok, add_error = rec.add_ok, rec.add_error

    async def send(index: int, started: float) -> None:
        payload = payloads[index % count]
        try:
            async with post(url, data=payload.body) as resp:
                content = await resp.read()
        except TimeoutError as exc:  # aiohttp's timeouts subclass it (before ClientError: they are both)
            add_error("timeout", _describe(exc))
            return
        except aiohttp.ClientError as exc:
            add_error("transport", _describe(exc))
            return
        latency = clock() - started
        if resp.status != 200:
            add_error(f"http_{resp.status}", content[:300].decode(errors="replace"))
            return
        try:
            chunks, tokens = check(parse_json(content), payload)
        except Malformed as exc:
            add_error(exc.kind, exc.detail)
            return
        headers = resp.headers
        add_ok(
            latency,
            chunks,
            tokens,
            _header_ms(headers.get("x-queue-time")),
            _header_ms(headers.get("x-inference-time")),
        )

    return send


async def server_batch_totals(session: aiohttp.ClientSession, target: Target) -> BatchTotals | None:
    """(sum, count) of Convoy's batch-size histogram, when the server exports /metrics."""
    try:
        async with session.get(target.endpoint("/metrics")) as resp:
            if resp.status != 200:
                return None
            text = await resp.text()
    except (TimeoutError, aiohttp.ClientError, UnicodeDecodeError):
        return None
    # Before the first batch the labelled histogram has no samples yet: that reads as (0, 0).
    total = count = 0.0
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("convoy_batch_size_sum"):
            total += float(value)
        elif name.startswith("convoy_batch_size_count"):
            count += float(value)
    return total, count


def ensure_fd_limit(connections: int) -> None:
    """Each connection is a socket: raise the soft open-files limit (up to the hard one) to fit them."""
    try:
        import resource
    except ImportError:  # not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard)
        )
