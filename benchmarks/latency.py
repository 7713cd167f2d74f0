#!/usr/bin/env python3
"""Latency at c=1, paired: what one request costs through the server against the model alone.

The check "p50 at c=1 <= raw batch-1 + 3 ms" compares two numbers that, measured minutes apart
on a shared machine, drift by more than the 3 ms they are judged by (raw batch-1 alone moved
between 15.8 and 21.0 ms across three repeats of benchmarks/compare.py). Here both sides run
the same texts, in the same order, in alternating blocks a few seconds apart:

- the server (`convoy serve`, pinned to the server CPU) gets each text as one `/predict`
  request, one at a time, on one keep-alive connection from this process (pinned to the other
  CPU); the latency is the client's, from sending the request to reading the whole answer;
- the raw model, in a process of its own on the server CPU (idle, blocked on a pipe, while the
  server is measured), runs each text's chunks through `load_model`'s `prepare` + `forward`:
  the calls the batcher makes, with no HTTP, no queue and no thread hand-off.

Blocks of each side alternate (50 texts by default: a second or two; which side goes first
alternates too), and the report gives each side's p50 over all texts, the median and quartiles
of the per-block p50 differences (server - raw), and where the server's time went from its
timing headers (queue, inference, the handler's total). Smaller blocks follow the drift more
closely, but two processes taking turns on one CPU also evict each other's weights from the
caches, which slows both sides (measured with `--profiles short --texts 1200`: raw batch-1
11.2 ms with `--block 300`, 13.7 ms with `--block 10`) and narrows the difference a little.

    .venv/bin/python benchmarks/latency.py                      # MiniLM, short and paragraph
    .venv/bin/python benchmarks/latency.py --texts 200 --block 20 --profiles short
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts

from compare import ROOT, Server, free_port, pinned, shown

SLACK_MS = 3.0


def raw_worker(args: argparse.Namespace) -> None:
    """The model alone. Per line on stdin, `PROFILE START END`: run those texts; print latencies."""
    from models.loader import ModelSpec, load_model
    from server.bench.corpus import build_corpus
    from server.chunking import split_text

    model = load_model(
        ModelSpec(source=args.model, device=args.device, dtype=args.dtype, torch_threads=args.torch_threads)
    )
    count, max_tokens = model.count_tokens, model.info.max_tokens
    work = {
        p: [
            [c.text for c in split_text(t, args.chunk_size, max_tokens=max_tokens, count_tokens=count)]
            for t in texts
        ]
        for p, texts in ((p, build_corpus(p, args.texts)) for p in args.profiles.split(","))
    }
    print("ready", flush=True)
    for line in sys.stdin:
        profile, first, last = line.split()
        latencies = []
        for chunks in work[profile][int(first) : int(last)]:
            t0 = time.perf_counter()
            model.forward(model.prepare(chunks))
            latencies.append((time.perf_counter() - t0) * 1e3)
        print(json.dumps(latencies), flush=True)
    model.close()


TIMINGS = ("x-queue-time", "x-inference-time", "x-total-time")


def server_block(
    conn: http.client.HTTPConnection, texts: Sequence[str], chunk_size: int, timings: dict[str, list[float]]
) -> list[float]:
    """Latencies seen by the client; `timings` gathers the server's own timing headers (ms)."""
    latencies = []
    for text in texts:
        body = json.dumps({"text": text, "chunk_size": chunk_size}).encode()
        t0 = time.perf_counter()
        conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = resp.read()
        latencies.append((time.perf_counter() - t0) * 1e3)
        if resp.status != 200:
            raise SystemExit(f"/predict answered {resp.status}: {payload[:300]!r}")
        for name in TIMINGS:
            timings.setdefault(name, []).append(float(resp.getheader(name, "nan")))
    return latencies


def p50(values: Sequence[float]) -> float:
    return statistics.median(values)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model path or hub id [the embedded MiniLM]")
    parser.add_argument("--profiles", default="short,paragraph")
    parser.add_argument(
        "--texts", type=int, default=600, help="texts per profile, each run by both [%(default)s]"
    )
    parser.add_argument(
        "--block", type=int, default=50, help="texts per block; sides alternate [%(default)s]"
    )
    parser.add_argument("--warmup-texts", type=int, default=30)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--json", help="also write the summary here (benchmarks/compare.py reads it)")
    parser.add_argument("--server-cpus", default="1")
    parser.add_argument("--client-cpus", default="0")
    parser.add_argument("--raw-worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


class RawModel:
    """The raw-model worker process, driven over its pipes."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        if self.stdout.readline().strip() != "ready":
            raise SystemExit("the raw model worker did not start")

    def run(self, profile: str, first: int, last: int) -> list[float]:
        self.stdin.write(f"{profile} {first} {last}\n")
        self.stdin.flush()
        return json.loads(self.stdout.readline())

    def close(self) -> None:
        self.stdin.close()
        self.proc.wait(timeout=30)


def measure_profile(
    profile: str, conn: http.client.HTTPConnection, raw: RawModel, args: argparse.Namespace
) -> dict[str, float]:
    from server.bench.corpus import build_corpus

    texts = build_corpus(profile, args.texts)
    server_block(conn, texts[: args.warmup_texts], args.chunk_size, {})
    raw.run(profile, 0, args.warmup_texts)
    served: list[float] = []
    alone: list[float] = []
    diffs: list[float] = []
    timings: dict[str, list[float]] = {}
    for k, first in enumerate(range(0, len(texts), args.block)):
        last = min(first + args.block, len(texts))
        if k % 2 == 0:
            s = server_block(conn, texts[first:last], args.chunk_size, timings)
            w = raw.run(profile, first, last)
        else:
            w = raw.run(profile, first, last)
            s = server_block(conn, texts[first:last], args.chunk_size, timings)
        served += s
        alone += w
        diffs.append(p50(s) - p50(w))
    quartiles = statistics.quantiles(diffs, n=4)
    return {
        "server": p50(served),
        "raw": p50(alone),
        "diff": p50(diffs),
        "diff_q1": quartiles[0],
        "diff_q3": quartiles[2],
        "blocks": len(diffs),
        **{name: p50(values) for name, values in timings.items()},
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.raw_worker:
        raw_worker(args)
        return
    pin = (os.cpu_count() or 1) >= 2
    if pin:
        os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})
    server_cpus = args.server_cpus if pin else None
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    model_flags = ["--model", args.model] if args.model else []
    model_flags += ["--device", args.device, "--dtype", args.dtype]
    port = free_port()
    serve = [sys.executable, "-m", "server.cli", "serve", "--port", str(port), *model_flags]
    serve += ["--torch-threads", str(args.torch_threads), "--no-access-log", "--log-level", "warning"]
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "latency-server.log"
    server = Server("convoy", pinned(server_cpus, serve), port, log)
    raw_argv = [sys.executable, str(Path(__file__).resolve()), "--raw-worker", *model_flags]
    raw_argv += ["--profiles", args.profiles, "--texts", str(args.texts)]
    raw_argv += ["--chunk-size", str(args.chunk_size), "--torch-threads", str(args.torch_threads)]
    raw_argv = pinned(server_cpus, raw_argv)
    print(f"# {shown(server.argv)}\n# {shown(raw_argv)}", flush=True)

    raw = RawModel(raw_argv, env)
    server.start(env)
    results = {}
    try:
        server.wait_ready()
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for profile in args.profiles.split(","):
            results[profile] = measure_profile(profile, conn, raw, args)
        conn.close()
    finally:
        server.stop()
        raw.close()

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(
        f"\n{args.texts} texts per profile, alternating blocks of {args.block}; "
        "p50 over all texts; the difference is the median (and quartiles) of per-block p50 differences.\n"
    )
    print(
        f"| profile | server p50 ms | raw p50 ms | server - raw ms | <= {SLACK_MS:g} ms "
        "| in the server: queue / inference / handler total ms |"
    )
    print("|---|---:|---:|---:|---|---|")
    for profile, r in results.items():
        split = " / ".join(f"{r[name]:.2f}" for name in TIMINGS)
        diff = f"{r['diff']:+.2f} ({r['diff_q1']:+.2f} to {r['diff_q3']:+.2f})"
        met = "yes" if r["diff"] <= SLACK_MS else "**no**"
        print(f"| {profile} | {r['server']:.2f} | {r['raw']:.2f} | {diff} | {met} | {split} |")


if __name__ == "__main__":
    main()
