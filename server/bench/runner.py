"""One process's share of one load level: warm-up, then closed-loop workers or open-loop arrivals.

Closed loop: `concurrency` workers each send their next request as soon as the last one is
answered. Open loop: arrivals at `rate` requests/s with exponential gaps from a seeded RNG; each
request's latency runs from its *scheduled* send time, so time spent waiting for a free
connection (or behind a slow generator) is counted, not hidden. Bodies are serialised before
the clock starts; only correct answers count towards latency and throughput.

Requests go over one aiohttp session per process with a pool of `max_inflight` keep-alive
connections (see client.py). Under `--processes N` each process runs its share of every level
and passes the `Gate` with the others between phases, so they measure the same window.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from dataclasses import dataclass
from typing import Literal, Protocol

from server.bench.client import Send, Target, make_sender, open_session, server_batch_totals
from server.bench.merge import ShareResult
from server.bench.progress import Progress
from server.bench.stats import Recorder

Mode = Literal["closed", "open"]


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


class Gate(Protocol):
    """Where the generator processes wait for each other (one process: returns at once)."""

    async def wait(self) -> None: ...


class NoGate:
    async def wait(self) -> None:
        return None


async def _closed_loop(load: Load, send: Send, offset: int) -> None:
    counter = itertools.count()
    limit = math.inf if load.requests is None else load.requests
    deadline = time.perf_counter() + load.duration_s if load.duration_s else math.inf
    clock = time.perf_counter

    async def worker() -> None:
        while True:
            index = next(counter)
            started = clock()
            if index >= limit or started >= deadline:
                return
            await send(offset + index, started)

    await asyncio.gather(*(worker() for _ in range(int(load.level))))


async def _open_loop(load: Load, send: Send, offset: int, seed: int) -> None:
    rng = random.Random(seed)
    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    deadline = start + load.duration_s if load.duration_s else math.inf
    scheduled = start
    for index in itertools.count():
        scheduled += rng.expovariate(load.level)
        if (load.requests is not None and index >= load.requests) or scheduled >= deadline:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        # The session's pool caps requests in flight at max_inflight; a request waiting there for
        # a connection is already on the clock, which started at its scheduled time.
        task = asyncio.create_task(send(offset + index, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)


async def _drive(load: Load, send: Send, offset: int, seed: int) -> None:
    if load.mode == "closed":
        await _closed_loop(load, send, offset)
    else:
        await _open_loop(load, send, offset, seed)


def _progress(rec: Recorder, load: Load, enabled: bool, desc: str) -> Progress:
    return Progress(rec, requests=load.requests, duration_s=load.duration_s, enabled=enabled, desc=desc)


async def run_level(
    target: Target,
    load: Load | None,
    gate: Gate,
    *,
    warmup_s: float = 0.0,
    progress: bool = False,
    desc: str = "",
    seed: int = 0,
    offset: int = 0,
    reads_metrics: bool = True,
) -> ShareResult | None:
    """Warm up (discarded), then measure `load` over fresh connections; None when idle (`load` None).

    Every process passes the gate three times per level, idle or not: after the warm-up, after the
    server's batch counters were read, and after measuring (before they are read again).
    """
    async with open_session(target, load.max_inflight if load else 1) as session:
        if load and warmup_s > 0:
            warm = Load(load.mode, load.level, load.max_inflight, duration_s=warmup_s)
            warm_rec = Recorder()
            with _progress(warm_rec, warm, progress, f"{desc} warmup"):
                await _drive(warm, make_sender(session, target, warm_rec), offset, seed + 1)
        await gate.wait()
        before = await server_batch_totals(session, target) if reads_metrics else None
        await gate.wait()
        rec = Recorder()
        cpu0, started = time.process_time(), time.perf_counter()
        if load:
            with _progress(rec, load, progress, desc):
                await _drive(load, make_sender(session, target, rec), offset, seed)
        finished, cpu_s = time.perf_counter(), time.process_time() - cpu0
        await gate.wait()
        after = await server_batch_totals(session, target) if reads_metrics else None
    if load is None:
        return None
    return ShareResult(rec, started, finished, cpu_s, before, after)
