#!/usr/bin/env python3
"""Convoy vs Infinity (the closest Python peer), side by side in one run -> docs/benchmarks.md.

Infinity is not a dependency of Convoy: install it in a venv of its own and pass its binary,

    python3 -m venv /tmp/infinity && /tmp/infinity/bin/pip install torch==2.13.0 \
        "infinity-emb[server,torch]" && /tmp/infinity/bin/pip install torch==2.13.0
    .venv/bin/python benchmarks/vs_infinity.py --infinity /tmp/infinity/bin/infinity_emb

Both servers get max batch 32 and the same pinning (server CPU 1, torch threads 1; load
generator CPU 0); each repeat measures the raw model (batch 32), Convoy's /v1/embeddings and
/predict, and Infinity's /v1/embeddings at concurrency 64 on the short profile, alternating
the order; medians are reported.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from compare import Plan, RssSampler, Server, free_port, pinned, run_offline, write_section  # noqa: E402

from models.loader import default_model_path  # noqa: E402
from server.bench.report import read_json  # noqa: E402
from server.bench.stats import LevelSummary  # noqa: E402


@contextlib.contextmanager
def started(server: Server, env: dict[str, str], health: str) -> Iterator[Server]:
    server.start(env)
    try:
        server.wait_ready(path=health)
        yield server
    finally:
        server.stop()


def bench(plan: Plan, server: Server, route: str, label: str, concurrency: int) -> LevelSummary:
    out = plan.work / f"{label}.json"
    argv = [sys.executable, "-m", "server.cli", "bench", "--url", server.url, "--route", route]
    argv += ["--profile", "short", "--concurrency", str(concurrency), *plan.bench_flags(), "--json", str(out)]
    assert server.proc is not None
    with RssSampler(server.proc.pid) as rss:
        plan.run(pinned(plan.bench_cpus, argv), label)
    server.peak_rss = max(server.peak_rss, rss.peak)
    (level,) = read_json(out)["levels"]
    return level


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--infinity", required=True, help="path of the infinity_emb binary")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--work", default=str(ROOT / "bench-out"))
    args = p.parse_args()
    args.batched, args.device, args.dtype, args.torch_threads = 32, "cpu", "float32", 1
    work = Path(args.work) / f"vs-infinity-{dt.datetime.now():%Y%m%d-%H%M%S}"
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    plan = Plan(args, work, "1", "0", env)
    model = str(default_model_path())

    convoy_argv = [
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        "--port",
        str(free_port()),
        "--max-batch-size",
        "32",
        "--torch-threads",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    infinity_argv = [
        args.infinity,
        "v2",
        "--model-id",
        model,
        "--engine",
        "torch",
        "--device",
        "cpu",
        "--batch-size",
        "32",
        "--no-vector-disk-cache",
        "--url-prefix",
        "/v1",
        "--port",
        str(free_port()),
    ]
    convoy = Server(
        "convoy",
        pinned("1", convoy_argv),
        int(convoy_argv[convoy_argv.index("--port") + 1]),
        work / "convoy.log",
    )
    infinity = Server(
        "infinity",
        pinned("1", infinity_argv),
        int(infinity_argv[infinity_argv.index("--port") + 1]),
        work / "infinity.log",
    )
    for s in (convoy, infinity):
        plan.note(s.argv)

    figures: dict[str, list[float]] = {
        "raw b=32": [],
        "convoy /v1/embeddings": [],
        "convoy /predict": [],
        "infinity /v1/embeddings": [],
    }
    p50: dict[str, list[float]] = {k: [] for k in figures}
    for repeat in range(args.repeats):
        raw = read_json(run_offline(plan, "short", repeat))["levels"]
        b32 = next(level for level in raw if level.label == "raw b=32")
        figures["raw b=32"].append(b32.chunks_per_s)
        runs = [("convoy", convoy, "/ready"), ("infinity", infinity, "/health")]
        for name, server, health in runs if repeat % 2 == 0 else reversed(runs):
            with started(server, env, health):
                routes = ["/v1/embeddings", "/predict"] if name == "convoy" else ["/v1/embeddings"]
                for route in routes:
                    level = bench(
                        plan, server, route, f"{name}{route.replace('/', '-')}-{repeat}", args.concurrency
                    )
                    key = f"{name} {route}"
                    figures[key].append(level.chunks_per_s)
                    p50[key].append(level.latency_ms["p50"])

    raw_med = statistics.median(figures["raw b=32"])
    rows = ["| what | chunks/s (median) | p50 ms | / raw b=32 | runs |", "|---|---|---|---|---|"]
    for key, values in figures.items():
        med = statistics.median(values)
        lat = f"{statistics.median(p50[key]):.1f}" if p50[key] else "-"
        rows.append(
            f"| {key} | {med:.1f} | {lat} | {med / raw_med:.2f} | {', '.join(f'{v:.1f}' for v in values)} |"
        )
    ratio = statistics.median(figures["convoy /v1/embeddings"]) / statistics.median(
        figures["infinity /v1/embeddings"]
    )
    body = "\n".join(
        [
            "## Convoy vs Infinity (short texts, concurrency 64)",
            "",
            f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; {args.repeats} repeats interleaved, "
            f"{args.duration:g} s per level after {args.warmup:g} s warm-up; medians.",
            "- Both servers: max batch 32, pinned to CPU 1 with one torch thread; `convoy bench` on CPU 0.",
            "",
            *rows,
            "",
            f"Convoy / Infinity on the same route (/v1/embeddings): **{ratio:.2f}x**.",
            "",
            "Commands:",
            "",
            *[f"    {c}" for c in plan.commands],
        ]
    )
    write_section(Path(args.out), "vs Infinity", body)
    print(body)


if __name__ == "__main__":
    main()
