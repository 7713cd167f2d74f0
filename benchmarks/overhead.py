#!/usr/bin/env python3
"""The overhead-bound benchmark: what the serving stack costs per request when the model is free.

A 1-layer, 32-wide BERT with MiniLM's tokenizer (benchmarks/tiny_model.py) makes compute nearly
free, as a GPU does for real encoders: what is left is HTTP, validation, batching and hand-offs.
In one run, pinned (server and offline model on one CPU, the load generator on another) and
interleaved, repeated, medians reported:

- the bare ASGI floor: uvicorn + httptools + uvloop answering a canned body (echo_server.py);
- Convoy on the tiny model: `--workers 1` (one process), and `--workers N` where cores allow;
- the tiny model offline (`convoy bench --offline`): tokenise + forward + pool, batch 32.

Each target is loaded with `convoy bench`, c=64, short texts, on /v1/embeddings and /predict. The
report gives requests/s, the server's CPU time per request (from /proc: the cost that decides
how many requests one core serves), and the ratios to the floor and to the offline limit.

    .venv/bin/python benchmarks/overhead.py --quick        # one repeat, 4 s levels
    .venv/bin/python benchmarks/overhead.py                # 3 repeats, 10 s levels
    .venv/bin/python benchmarks/overhead.py --baseline ../old-checkout   # before/after, one run
    .venv/bin/python benchmarks/overhead.py --model minilm --profile paragraph --baseline ../old

With --baseline DIR, that checkout's Convoy (`python -m server.cli serve` run in DIR, with this
venv) joins the run as `baseline`, so a change is measured side by side with what it changes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts

from compare import ROOT, Server, free_port, pinned, shown
from tiny_model import build_tiny_model

from server.bench.report import read_json

ROUTES = ("/v1/embeddings", "/predict")
TINY_DIM = 32
MINILM_DIM = 384


@dataclass
class Result:
    """One target on one route: a value per repeat."""

    requests_per_s: list[float] = field(default_factory=list)
    cpu_us_per_request: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def median(self, values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its live descendants (front-ends and engine of --workers)."""
    total = cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(tree_cpu_seconds(int(c)) for c in children)


class Run:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        cpus = len(os.sched_getaffinity(0))
        pin = cpus >= 2 and not args.no_pin
        self.server_cpus = "1" if pin else None
        self.bench_cpus = "0" if pin else None
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.commands: list[str] = []

    def note(self, argv: list[str]) -> None:
        if shown(argv) not in self.commands:
            self.commands.append(shown(argv))

    def bench(self, server: Server, route: str, label: str) -> tuple[float, float, float, int]:
        """(requests/s, server CPU µs per request, p50 ms, errors) of one level against `server`."""
        out = self.work / f"{label}.json"
        argv = [sys.executable, "-m", "server.cli", "bench", "--url", server.url, "--route", route]
        argv += ["--concurrency", str(self.args.concurrency), "--profile", self.args.profile]
        argv += ["--duration", str(self.args.duration), "--warmup", str(self.args.warmup), "--no-progress"]
        argv += ["--json", str(out)]
        argv = pinned(self.bench_cpus, argv)
        self.note(argv)
        assert server.proc is not None
        before = tree_cpu_seconds(server.proc.pid)
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        after = tree_cpu_seconds(server.proc.pid)
        if result.returncode != 0:
            raise SystemExit(f"bench {label} failed:\n{result.stderr[-2000:]}")
        (level,) = read_json(out)["levels"]
        # The server's CPU covers warm-up too: spread it over the requests of both phases.
        served = level.requests * (self.args.duration + self.args.warmup) / self.args.duration
        cpu_us = (after - before) / max(served, 1) * 1e6
        errors = sum(level.errors.values())
        return level.requests_per_s, cpu_us, level.latency_ms["p50"], errors

    def offline(self, model: Path | None, label: str) -> float:
        out = self.work / f"{label}.json"
        argv = [sys.executable, "-m", "server.cli", "bench", "--offline"]
        argv += ["--model", str(model)] if model else []
        argv += ["--profile", self.args.profile, "--max-batch-size", "32", "--torch-threads", "1"]
        argv += ["--duration", str(self.args.duration), "--warmup", str(self.args.warmup), "--no-progress"]
        argv += ["--json", str(out)]
        argv = pinned(self.server_cpus, argv)
        self.note(argv)
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"offline {label} failed:\n{result.stderr[-2000:]}")
        # The offline run reports batch 1, batch 32 and batch 32 sorted by length: the limit is
        # the best of them (a server's batcher sorts too).
        return max(level.chunks_per_s for level in read_json(out)["levels"])


def targets(run: Run, model: Path | None) -> list[Server]:
    """The servers of the run: the bare ASGI floor, Convoy at each --workers level, the baseline."""
    port = free_port()
    echo = [sys.executable, str(ROOT / "benchmarks" / "echo_server.py"), "--port", str(port)]
    echo += ["--dim", str(TINY_DIM if model else MINILM_DIM)]
    servers = [Server("floor", pinned(run.server_cpus, echo), port, run.work / "floor.log")]

    def convoy(*flags: str) -> list[str]:
        served = ["--model", str(model)] if model else []
        argv = [sys.executable, "-m", "server.cli", "serve", *served, "--port", str(port), *flags]
        argv += ["--torch-threads", "1", "--no-access-log", "--log-level", "warning"]
        return pinned(run.server_cpus, argv)

    for workers in run.args.workers:
        port = free_port()
        name = f"convoy-w{workers}"
        flags = ["--workers", str(workers)] if workers > 1 else []
        servers.append(Server(name, convoy(*flags), port, run.work / f"{name}.log"))
    if run.args.baseline:
        port = free_port()
        servers.append(Server("baseline", convoy(), port, run.work / "baseline.log", cwd=run.args.baseline))
    return servers


def report(run: Run, results: dict[tuple[str, str], Result], offline: list[float]) -> str:
    limit = statistics.median(offline)
    name = "MiniLM" if run.args.model == "minilm" else "Tiny model"
    lines = [
        f"{name} offline, {run.args.profile} texts (tokenise + forward + pool, batch 32): "
        f"**{limit:,.0f} seq/s** "
        f"(runs: {', '.join(f'{x:,.0f}' for x in offline)}).",
        "",
        "| route | server | req/s (runs) | median | server CPU / request | p50 ms | vs floor | vs offline |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for route in ROUTES:
        floor = results[("floor", route)]
        floor_rps = floor.median(floor.requests_per_s)
        for (name, r_route), res in results.items():
            if r_route != route:
                continue
            rps = res.median(res.requests_per_s)
            runs = ", ".join(f"{x:,.0f}" for x in res.requests_per_s)
            errors = f" ({res.errors} errors)" if res.errors else ""
            lines.append(
                f"| `{route}` | {name}{errors} | {runs} | {rps:,.0f} | "
                f"{res.median(res.cpu_us_per_request):,.0f} µs | {res.median(res.p50_ms):.1f} | "
                f"{rps / floor_rps:.2f}x | {rps / limit:.2f}x |"
            )
    if run.args.baseline:
        lines += ["", *paired_with_baseline(results)]
    lines += ["", "Commands:", "", "```", *run.commands, "```"]
    return "\n".join(lines)


def paired_with_baseline(results: dict[tuple[str, str], Result]) -> list[str]:
    """Each Convoy level over the baseline, repeat by repeat (within a repeat they run back to
    back, so each ratio shares one state of a noisy machine): median and range."""
    lines = ["Side by side with the baseline, per repeat (median, range):", ""]
    for route in ROUTES:
        base = results[("baseline", route)]
        for (name, r_route), res in results.items():
            if r_route != route or not name.startswith("convoy"):
                continue
            speed = [a / b for a, b in zip(res.requests_per_s, base.requests_per_s, strict=True)]
            cost = [b / a for a, b in zip(res.cpu_us_per_request, base.cpu_us_per_request, strict=True)]
            lines.append(
                f"- `{route}` {name}: **{statistics.median(speed):.2f}x** the requests/s "
                f"({min(speed):.2f}-{max(speed):.2f}); {statistics.median(cost):.2f}x less server CPU "
                f"per request ({min(cost):.2f}-{max(cost):.2f})"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured level")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--workers",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1],
        help="Convoy --workers levels to run, e.g. 1,2 (more than 1 needs the cores for it)",
    )
    parser.add_argument("--quick", action="store_true", help="one repeat of 4 s levels")
    parser.add_argument("--baseline", type=Path, help="another checkout's Convoy, measured in the same run")
    parser.add_argument("--model", default="tiny", help="tiny (nearly free), minilm (the default), or a path")
    parser.add_argument("--profile", default="short", choices=("short", "paragraph", "mixed", "long"))
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--out", type=Path, help="also write the report (Markdown) here")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.duration, args.warmup = 1, 4.0, 1.0
    work = Path(tempfile.mkdtemp(prefix="convoy-overhead-"))
    run = Run(args, work)
    model: Path | None
    if args.model == "tiny":
        model = build_tiny_model(ROOT / "bench-out" / "tiny-bert")
    elif args.model == "minilm":
        model = None  # what convoy serve serves by default
    else:
        model = Path(args.model)
    servers = targets(run, model)
    results: dict[tuple[str, str], Result] = {(s.name, r): Result() for s in servers for r in ROUTES}
    offline: list[float] = []
    try:
        for server in servers:
            run.note(server.argv)
            server.start(run.env)
        for server in servers:
            server.wait_ready()
        for repeat in range(args.repeats):
            # Interleaved: every target once per repeat, so drift on a shared machine hits all alike.
            offline.append(run.offline(model, f"offline-{repeat}"))
            for route in ROUTES:
                for server in servers:
                    label = f"{server.name}-{route.strip('/').replace('/', '-')}-{repeat}"
                    print(f"[overhead] {label}", flush=True)
                    rps, cpu_us, p50, errors = run.bench(server, route, label)
                    res = results[(server.name, route)]
                    res.requests_per_s.append(rps)
                    res.cpu_us_per_request.append(cpu_us)
                    res.p50_ms.append(p50)
                    res.errors += errors
    finally:
        for server in servers:
            server.stop()
    text = report(run, results, offline)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
