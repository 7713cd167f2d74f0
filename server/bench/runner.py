"""The load generator: closed-loop workers or open-loop Poisson arrivals over one pooled httpx client.

Closed loop: `concurrency` workers each send their next request as soon as the last one is
answered. Open loop: arrivals at `rate` requests/s with exponential gaps from a seeded RNG; each
request's latency runs from its *scheduled* send time, so time spent waiting for a free
connection (or behind a slow generator) is counted, not hidden. Bodies are serialised before
the clock starts; only correct answers count towards latency and throughput.

Each connection is its own `httpx.AsyncClient` with a pool of one: httpcore's shared pool does
work proportional to its size on every request (encode/httpx#3215), which at 256 connections
made the generator, not the server, the bottleneck. With one client per connection the cost
per request stays flat, as in wrk-style tools where each worker owns its connection.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Literal

import httpx
from tqdm import tqdm

from server.bench.routes import Malformed, Payload, RouteSpec, parse_json
from server.bench.stats import LevelSummary, Outcome, Recorder, summarize

Mode = Literal["closed", "open"]
_HEADERS = {"content-type": "application/json"}
_TICK_S = 0.25
_BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


@dataclass(frozen=True, slots=True)
class Load:
    """One level: closed loop at `level` concurrent requests, or open loop at `level` requests/s."""

    mode: Mode
    level: float
    max_inflight: int
    requests: int | None = None
    duration_s: float | None = None

    @property
    def label(self) -> str:
        return f"c={int(self.level)}" if self.mode == "closed" else f"r={self.level:g}/s"


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    route: RouteSpec
    payloads: Sequence[Payload]
    timeout_s: float = 60.0
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. Authorization


Send = Callable[[httpx.AsyncClient, int], Awaitable[Outcome]]


def _header_ms(headers: httpx.Headers, name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def make_sender(target: Target) -> Send:
    payloads, spec = target.payloads, target.route

    async def send(client: httpx.AsyncClient, index: int) -> Outcome:
        payload = payloads[index % len(payloads)]
        try:
            resp = await client.post(spec.path, content=payload.body, headers=_HEADERS)
        except httpx.TimeoutException as exc:
            return Outcome("timeout", detail=f"{type(exc).__name__}: {exc}")
        except httpx.HTTPError as exc:
            return Outcome("transport", detail=f"{type(exc).__name__}: {exc}")
        if resp.status_code != 200:
            return Outcome(f"http_{resp.status_code}", detail=resp.text[:300])
        try:
            chunks, tokens = spec.check(parse_json(resp.content), payload)
        except Malformed as exc:
            return Outcome(exc.kind, detail=exc.detail)
        return Outcome(
            None,
            chunks=chunks,
            tokens=tokens,
            queue_ms=_header_ms(resp.headers, "x-queue-time"),
            inference_ms=_header_ms(resp.headers, "x-inference-time"),
        )

    return send


async def _closed_loop(load: Load, clients: Sequence[httpx.AsyncClient], send: Send, rec: Recorder) -> None:
    counter = itertools.count()
    deadline = time.perf_counter() + load.duration_s if load.duration_s else math.inf

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            index = next(counter)
            if (load.requests is not None and index >= load.requests) or time.perf_counter() >= deadline:
                return
            started = time.perf_counter()
            outcome = await send(client, index)
            rec.add(outcome, time.perf_counter() - started)

    await asyncio.gather(*(worker(client) for client in clients[: int(load.level)]))


async def _open_loop(
    load: Load, clients: Sequence[httpx.AsyncClient], send: Send, rec: Recorder, seed: int
) -> None:
    rng = random.Random(seed)
    idle: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
    for client in clients:
        idle.put_nowait(client)
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    deadline = start + load.duration_s if load.duration_s else math.inf

    async def fire(index: int, scheduled: float) -> None:
        client = await idle.get()  # waiting for a free connection counts: the clock started already
        try:
            outcome = await send(client, index)
        finally:
            idle.put_nowait(client)
        rec.add(outcome, time.perf_counter() - scheduled)

    scheduled = start
    for index in itertools.count():
        scheduled += rng.expovariate(load.level)
        if (load.requests is not None and index >= load.requests) or scheduled >= deadline:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(fire(index, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)


async def _server_batch_totals(client: httpx.AsyncClient) -> tuple[float, float] | None:
    """(sum, count) of Convoy's batch-size histogram, when the server exports /metrics."""
    try:
        resp = await client.get("/metrics")
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    # Before the first batch the labelled histogram has no samples yet: that reads as (0, 0).
    total = count = 0.0
    for line in resp.text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("convoy_batch_size_sum"):
            total += float(value)
        elif name.startswith("convoy_batch_size_count"):
            count += float(value)
    return total, count


class _Progress:
    """A tqdm bar on stderr, refreshed a few times a second by a ticker (never per request)."""

    def __init__(self, load: Load, rec: Recorder, *, enabled: bool, desc: str) -> None:
        self._load, self._rec = load, rec
        self._by_time = load.requests is None
        total = load.duration_s if self._by_time else load.requests
        self._bar = tqdm(
            total=total,
            desc=desc,
            unit="s" if self._by_time else "req",
            file=sys.stderr,
            disable=not enabled,
            leave=enabled,
            dynamic_ncols=True,
            bar_format=_BAR_FORMAT,
        )
        self._start = time.perf_counter()
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> _Progress:
        if not self._bar.disable:
            self._task = asyncio.create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self._update()
        self._bar.close()

    async def _tick(self) -> None:
        while True:
            self._update()
            await asyncio.sleep(_TICK_S)

    def _update(self) -> None:
        elapsed = time.perf_counter() - self._start
        rec = self._rec
        if self._by_time:
            self._bar.n = round(min(elapsed, self._load.duration_s or 0.0), 1)
        else:
            self._bar.n = rec.completed
        self._bar.set_postfix_str(
            f", ok={rec.ok} err={rec.error_total} {rec.ok / max(elapsed, 1e-9):.0f} req/s", refresh=False
        )
        self._bar.refresh()


async def _open_clients(stack: AsyncExitStack, target: Target, count: int) -> list[httpx.AsyncClient]:
    """`count` clients of one connection each (see the module docstring for why)."""
    # A connection idle for longer than 1 s is re-opened rather than reused: httpx's default (5 s)
    # equals uvicorn's keep-alive timeout, and reusing a connection the server is closing at that
    # moment fails with a ReadError (seen at c=256 after the warm-up, while slow requests drain).
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=1.0)
    tls = ssl.create_default_context()  # built once: httpx would build one per client
    return [
        await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=target.url,
                limits=one,
                headers=target.headers,
                timeout=httpx.Timeout(target.timeout_s),
                verify=tls,
                trust_env=False,  # a proxy from the environment must not sit between bench and server
            )
        )
        for _ in range(count)
    ]


async def run_level(
    target: Target, load: Load, *, warmup_s: float = 0.0, progress: bool = False, seed: int = 0
) -> LevelSummary:
    """Warm up (discarded), then measure one level over `max_inflight` fresh connections."""
    async with AsyncExitStack() as stack:
        clients = await _open_clients(stack, target, load.max_inflight)
        send = make_sender(target)
        if warmup_s > 0:
            warm = Load(load.mode, load.level, load.max_inflight, duration_s=warmup_s)
            warm_rec = Recorder()
            with _Progress(warm, warm_rec, enabled=progress, desc=f"{load.label} warmup"):
                await _drive(warm, clients, send, warm_rec, seed + 1)
        before = await _server_batch_totals(clients[0])
        rec = Recorder()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with _Progress(load, rec, enabled=progress, desc=load.label):
            await _drive(load, clients, send, rec, seed)
        elapsed = time.perf_counter() - wall0
        cpu = (time.process_time() - cpu0) / max(elapsed, 1e-9)
        after = await _server_batch_totals(clients[0])
    mean_batch = None
    if before and after and after[1] > before[1]:
        mean_batch = (after[0] - before[0]) / (after[1] - before[1])
    return summarize(
        rec,
        label=load.label,
        mode=load.mode,
        level=load.level,
        elapsed_s=elapsed,
        client_cpu=cpu,
        server_mean_batch=mean_batch,
    )


async def _drive(
    load: Load, clients: Sequence[httpx.AsyncClient], send: Send, rec: Recorder, seed: int
) -> None:
    if load.mode == "closed":
        await _closed_loop(load, clients, send, rec)
    else:
        await _open_loop(load, clients, send, rec, seed)


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


async def run_levels(
    target: Target, loads: Sequence[Load], *, warmup_s: float, progress: bool, seed: int = 0
) -> list[LevelSummary]:
    ensure_fd_limit(max(load.max_inflight for load in loads))
    return [await run_level(target, load, warmup_s=warmup_s, progress=progress, seed=seed) for load in loads]
