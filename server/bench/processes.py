"""`--processes N`: every level split across N generator processes, merged back into one summary.

One Python process tops out at a few thousand requests/s however lean its client, so a fast
server needs several. Each process (spawned: no inherited event loop or sockets) runs its share
of the concurrency or rate and of the requests; a barrier lines them up after the warm-up and
after each level, so they load the server over the same window. Their raw latencies come back
to the parent, which computes percentiles over all of them (merge.py).

With one process the same code runs in-process, gates that return at once.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.synchronize import Barrier

from server.bench.aio import run_async
from server.bench.client import Target, ensure_fd_limit
from server.bench.merge import ShareResult, merge_shares
from server.bench.runner import Gate, Load, NoGate, run_level
from server.bench.stats import LevelSummary

_SEED_STRIDE = 7919  # each process draws its own arrivals: equal seeds would fire in lock-step


class GeneratorFailed(Exception):
    """A generator process failed or died; the message says which and why."""


def split_counts(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights`, the remainder to the largest fractions first."""
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    counts = [int(x) for x in exact]
    by_fraction = sorted(range(len(weights)), key=lambda i: counts[i] - exact[i])
    for i in by_fraction[: total - sum(counts)]:
        counts[i] += 1
    return counts


def split_load(load: Load, processes: int) -> list[Load | None]:
    """Each process's share of `load`; None for a process with nothing to do at this level.

    Connections (the concurrency, or the open loop's cap) are dealt out evenly, and requests and
    rate in proportion to them, so every busy process should finish at about the same time.
    Fewer connections (or requests) than processes leave the extra processes idle.
    """
    busy = min(processes, load.max_inflight, load.requests or load.max_inflight)
    inflight = split_counts(load.max_inflight, [1] * busy)
    requests = split_counts(load.requests, inflight) if load.requests is not None else [None] * busy
    shares: list[Load | None] = []
    for cap, count in zip(inflight, requests, strict=True):
        level = float(cap) if load.mode == "closed" else load.level * cap / load.max_inflight
        shares.append(replace(load, level=level, max_inflight=cap, requests=count))
    return shares + [None] * (processes - busy)


@dataclass(frozen=True, slots=True)
class Job:
    """What one process runs: its share of every level, in order."""

    index: int
    processes: int
    target: Target
    loads: list[Load | None]
    labels: list[str]
    warmup_s: float
    progress: bool
    seed: int


class _BarrierGate:
    def __init__(self, barrier: Barrier) -> None:
        self._barrier = barrier

    async def wait(self) -> None:
        # Off the loop: the other processes may still be warming up, and the wait can be long.
        await asyncio.to_thread(self._barrier.wait)


async def _run_job(job: Job, gate: Gate) -> list[ShareResult | None]:
    ensure_fd_limit(max((load.max_inflight for load in job.loads if load), default=1))
    suffix = f" [{job.index + 1}/{job.processes}]" if job.processes > 1 else ""
    return [
        await run_level(
            job.target,
            load,
            gate,
            warmup_s=job.warmup_s,
            progress=job.progress and job.index == 0,  # one bar: the first process's share
            desc=label + suffix,
            seed=job.seed + _SEED_STRIDE * job.index,
            offset=job.index * len(job.target.payloads) // job.processes,
            reads_metrics=job.index == 0,  # process 0 runs every level (see split_load)
        )
        for load, label in zip(job.loads, job.labels, strict=True)
    ]


def _child(job: Job, barrier: Barrier, conn: Connection) -> None:
    """A spawned process's entry point: run the job, send back ("ok", results) or ("error", why)."""
    try:
        conn.send(("ok", run_async(_run_job(job, _BarrierGate(barrier)))))
    except threading.BrokenBarrierError:
        conn.send(("broken", "stopped because another generator process failed"))
    except BaseException as exc:  # whatever it was, the siblings must not wait for this process
        barrier.abort()
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _spawn(jobs: list[Job]) -> list[list[ShareResult | None]]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(jobs))
    procs: list[mp.process.BaseProcess] = []
    pending: dict[Connection, int] = {}
    for job in jobs:
        recv, send = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_child, args=(job, barrier, send), name=f"convoy-bench-{job.index}")
        child.start()
        send.close()  # the child holds the only write end: its death reads as EOF here
        procs.append(child)
        pending[recv] = job.index
    results: dict[int, list[ShareResult | None]] = {}
    failures: list[str] = []
    try:
        while pending:
            for conn in wait(list(pending)):
                assert isinstance(conn, Connection)
                index = pending.pop(conn)
                try:
                    kind, value = conn.recv()
                except EOFError:
                    procs[index].join()
                    kind, value = "error", f"exited with status {procs[index].exitcode} and no result"
                conn.close()
                if kind == "ok":
                    results[index] = value
                    continue
                barrier.abort()  # wake siblings waiting at a gate for the dead one
                if kind == "error":
                    failures.append(f"generator process {index + 1} of {len(jobs)}: {value}")
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join()
    if failures or len(results) < len(jobs):
        raise GeneratorFailed(failures[0] if failures else "a generator process stopped without a result")
    return [results[i] for i in range(len(jobs))]


def _usable_cores() -> int | None:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def run_levels(
    target: Target,
    loads: Sequence[Load],
    *,
    processes: int = 1,
    warmup_s: float = 0.0,
    progress: bool = False,
    seed: int = 0,
) -> list[LevelSummary]:
    """Run every level over `processes` generator processes; one merged summary per level."""
    shares = [split_load(load, processes) for load in loads]
    labels = [load.label for load in loads]
    jobs = [
        Job(i, processes, target, [s[i] for s in shares], labels, warmup_s, progress, seed)
        for i in range(processes)
    ]
    # One process runs in this one: no spawn, no pickling, the same gates (that return at once).
    per_job = [run_async(_run_job(jobs[0], NoGate()))] if processes == 1 else _spawn(jobs)
    cores = _usable_cores()
    return [
        merge_shares(
            [r for job in per_job if (r := job[level]) is not None],
            label=load.label,
            mode=load.mode,
            level=load.level,
            client_cores=cores,
        )
        for level, load in enumerate(loads)
    ]
