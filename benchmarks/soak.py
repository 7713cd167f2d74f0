"""Soak test: steady load for a set time while sampling the server's RSS, fds, threads and queue.

Starts `python -m server.cli serve` on a free loopback port (or attaches to `--url`, with
`--pid` for the process figures), runs a bounded number of closed-loop clients for `--duration`
seconds, and samples every `--interval` seconds:

- RSS and thread count from /proc/PID/status, open file descriptors from /proc/PID/fd (Linux);
- queue depth from /metrics (`convoy_queue_depth`, summed over models).

The load is mostly /predict, with some /stream requests, some clients that give up mid-request
(so the cancellation paths run too) and some invalid bodies (so the error paths run too).

It prints one row per sample and a summary (after warm-up / end / max), and exits 1 when a
figure grows without bound: it ended more than a floor above its post-warm-up value and either
ended above 1.5x that value or was still climbing over the second half (least-squares slope
above a limit). It also exits 1 when any request got a 5xx or the queue did not drain once the
load stopped. `--quick` runs a 30 s version.

    python benchmarks/soak.py --duration 300
    python benchmarks/soak.py --quick
    python benchmarks/soak.py --url http://127.0.0.1:8000 --pid 12345
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent

TEXTS = [
    "Convoy batches requests from many clients into one forward pass.",
    "A serving system is judged on its worst minute. " * 6,
    "Short one.",
    ("Dynamic batching trades a little latency for a lot of throughput. " * 4 + "\n\n") * 3,
    "Ünïcödé, 中文, emoji 🙂 and punctuation!? all go through the tokenizer.",
]


@dataclass(frozen=True)
class Limit:
    """When a figure counts as growing: `floor` absolute units and `slope` units per minute."""

    floor: float
    slope_per_min: float


LIMITS = {
    "rss_mib": Limit(floor=64, slope_per_min=4),
    "fds": Limit(floor=8, slope_per_min=1),
    "threads": Limit(floor=4, slope_per_min=0.5),
}


@dataclass
class Sample:
    t: float
    rss_mib: float | None
    fds: int | None
    threads: int | None
    queue_depth: float
    requests: int


@dataclass
class Load:
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())


# ---- process figures -----------------------------------------------------------------------
def process_figures(pid: int | None) -> tuple[float | None, int | None, int | None]:
    """(RSS in MiB, open fds, threads) of `pid` from /proc; Nones where unavailable."""
    if pid is None:
        return None, None, None
    rss = threads = None
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds, threads


def queue_depth(metrics_text: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(metrics_text)
        for s in family.samples
        if s.name == "convoy_queue_depth"
    )


# ---- load ----------------------------------------------------------------------------------
async def client(
    http: httpx.AsyncClient, url: str, cid: int, stop_at: float, load: Load, headers: dict[str, str]
) -> None:
    texts = itertools.cycle(TEXTS[cid % len(TEXTS) :] + TEXTS[: cid % len(TEXTS)])
    for n in itertools.count():
        if time.monotonic() >= stop_at:
            return
        text = next(texts)
        kind = (
            "stream"
            if n % 10 == 3
            else "abandon"
            if n % 20 == 7
            else "invalid"
            if n % 20 == 11
            else "predict"
        )
        try:
            if kind == "predict":
                r = await http.post(f"{url}/predict", json={"text": text, "chunk_size": 120}, headers=headers)
            elif kind == "stream":
                r = await http.post(f"{url}/stream", json={"text": text, "chunk_size": 80}, headers=headers)
            elif kind == "invalid":
                r = await http.post(f"{url}/predict", json={"text": " ", "chunk_size": 0}, headers=headers)
            else:  # a client that gives up almost at once: the server must drop its work
                r = await http.post(
                    f"{url}/predict",
                    json={"text": text * 4, "chunk_size": 60},
                    headers=headers,
                    timeout=0.005,
                )
            load.outcomes[f"{kind} {r.status_code}"] += 1
        except httpx.TimeoutException:
            load.outcomes[f"{kind} gave up" if kind == "abandon" else f"{kind} timeout"] += 1
        except httpx.TransportError as exc:
            load.outcomes[f"{kind} {type(exc).__name__}"] += 1


async def sampler(
    http: httpx.AsyncClient,
    url: str,
    pid: int | None,
    interval: float,
    stop_at: float,
    load: Load,
    samples: list[Sample],
    began: float,
) -> None:
    print(
        f"{'t (s)':>6} {'RSS (MiB)':>10} {'fds':>5} {'threads':>8} {'queue':>6} {'requests':>9} {'req/s':>7}"
    )
    last_t, last_n = began, 0
    while True:
        now = time.monotonic()
        rss, fds, threads = await asyncio.to_thread(process_figures, pid)
        depth = queue_depth((await http.get(f"{url}/metrics", timeout=10)).text)
        s = Sample(now - began, rss, fds, threads, depth, load.requests)
        samples.append(s)
        rate = (s.requests - last_n) / max(now - last_t, 1e-9)
        last_t, last_n = now, s.requests
        print(
            f"{s.t:6.0f} {_fmt(s.rss_mib, '.1f'):>10} {_fmt(s.fds):>5} {_fmt(s.threads):>8} "
            f"{s.queue_depth:6.0f} {s.requests:9d} {rate:7.1f}",
            flush=True,
        )
        if now >= stop_at:
            return
        await asyncio.sleep(min(interval, max(0.0, stop_at - now)))


async def wait_for_drain(http: httpx.AsyncClient, url: str, timeout_s: float = 15) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if queue_depth((await http.get(f"{url}/metrics", timeout=10)).text) == 0:
            return True
        await asyncio.sleep(0.2)
    return False


async def soak(args: argparse.Namespace, url: str, pid: int | None) -> tuple[list[Sample], Load, bool]:
    load = Load()
    samples: list[Sample] = []
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(
        max_connections=args.concurrency + 4, max_keepalive_connections=args.concurrency + 4
    )
    async with httpx.AsyncClient(timeout=args.request_timeout, limits=limits) as http:
        began = time.monotonic()
        stop_at = began + args.duration
        tasks = [
            asyncio.create_task(client(http, url, c, stop_at, load, headers)) for c in range(args.concurrency)
        ]
        await sampler(http, url, pid, args.interval, stop_at, load, samples, began)
        await asyncio.gather(*tasks)
        drained = await wait_for_drain(http, url)
        # One last sample once the load has stopped and the queue drained.
        rss, fds, threads = await asyncio.to_thread(process_figures, pid)
        depth = queue_depth((await http.get(f"{url}/metrics", timeout=10)).text)
        samples.append(Sample(time.monotonic() - began, rss, fds, threads, depth, load.requests))
    return samples, load, drained


# ---- verdict -------------------------------------------------------------------------------
def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in units per minute."""
    if len(points) < 3:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return 60 * sum((t - mx) * (v - my) for t, v in points) / var


def verdict(samples: list[Sample], warmup_s: float, duration_s: float) -> list[str]:
    """Print the summary; return the figures that grew without bound."""
    under_load = [s for s in samples if s.t <= duration_s + 1e-6]
    warm = [s for s in under_load if s.t >= warmup_s] or under_load
    final = samples[-1]
    failures = []
    print(f"\n{'figure':<12} {'start':>9} {'warm':>9} {'end':>9} {'max':>9} {'slope/min':>10}  (2nd half)")
    for name, limit in LIMITS.items():
        values = [(s.t, getattr(s, name)) for s in samples]
        if any(v is None for _, v in values):
            print(f"{name:<12} {'n/a (no --pid)':>9}")
            continue
        start = values[0][1]
        warm_v = getattr(warm[0], name)
        end = getattr(final, name)
        peak = max(v for _, v in values)
        half = [(s.t, getattr(s, name)) for s in warm if s.t >= warm[0].t + (warm[-1].t - warm[0].t) / 2]
        slope = slope_per_min(half)
        grew = end - warm_v > limit.floor and (end > 1.5 * warm_v or slope > limit.slope_per_min)
        print(
            f"{name:<12} {start:9.1f} {warm_v:9.1f} {end:9.1f} {peak:9.1f} {slope:10.2f}"
            + ("  GROWING" if grew else "")
        )
        if grew:
            failures.append(name)
    depths = [s.queue_depth for s in samples]
    print(
        f"{'queue_depth':<12} {depths[0]:9.0f} {warm[0].queue_depth:9.0f} {depths[-1]:9.0f} "
        f"{max(depths):9.0f}"
    )
    return failures


# ---- server --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def started_server(server_args: list[str], log_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *server_args,
    ]
    print("starting:", shlex.join(cmd), f"(log: {log_path})")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"}
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with {proc.returncode} during start-up; see {log_path}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the server never became ready")
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # graceful drain, as in production
            try:
                code = proc.wait(timeout=60)
                print(f"server stopped on SIGTERM with exit status {code}")
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                print("server did not stop within 60 s of SIGTERM; killed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", help="attach to a running server instead of starting one")
    p.add_argument("--pid", type=int, help="with --url: the server's process id, for RSS/fds/threads")
    p.add_argument("--duration", type=float, default=300, help="seconds of load (default 300)")
    p.add_argument("--interval", type=float, default=5, help="seconds between samples (default 5)")
    p.add_argument(
        "--warmup", type=float, help="seconds before the baseline sample (default 20%% of duration)"
    )
    p.add_argument("--concurrency", type=int, default=8, help="closed-loop clients (default 8)")
    p.add_argument("--request-timeout", type=float, default=60, help="client timeout of one request")
    p.add_argument("--api-key", help="sent as a Bearer token, for servers with auth on")
    p.add_argument(
        "--server-args",
        default="--torch-threads 1 --no-access-log --log-level warning",
        help="flags for `convoy serve` when the script starts the server",
    )
    p.add_argument("--quick", action="store_true", help="30 s, a sample every 2 s, 4 clients")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.interval, args.concurrency = 30.0, 2.0, 4
    if args.warmup is None:
        args.warmup = 0.2 * args.duration
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.url:
            url, pid = args.url.rstrip("/"), args.pid
        else:
            log_path = Path(tempfile.gettempdir()) / f"convoy-soak-{os.getpid()}.log"
            url, proc = stack.enter_context(started_server(shlex.split(args.server_args), log_path))
            pid = proc.pid
        print(
            f"soak: {args.duration:g} s, {args.concurrency} clients, sampling every {args.interval:g} s, "
            f"server {url} (pid {pid}); {os.cpu_count()} CPUs on this machine"
        )
        samples, load, drained = asyncio.run(soak(args, url, pid))
        growing = verdict(samples, args.warmup, args.duration)
    server_errors = {k: v for k, v in load.outcomes.items() if k.split()[-1].startswith("5")}
    print("\noutcomes:", ", ".join(f"{k}: {v}" for k, v in sorted(load.outcomes.items())))
    problems = [f"{name} grows without bound" for name in growing]
    if server_errors:
        problems.append(f"server errors: {server_errors}")
    if not drained:
        problems.append("the queue did not drain after the load stopped")
    if problems:
        print("FAIL:", "; ".join(problems))
        return 1
    print("OK: nothing grew without bound, no 5xx, the queue drained")
    return 0


def _fmt(value: float | None, spec: str = "") -> str:
    return "n/a" if value is None else format(value, spec)


if __name__ == "__main__":
    sys.exit(main())
