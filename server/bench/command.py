"""`convoy bench`: parsed flags -> corpus -> levels (HTTP) or the offline limit -> table, JSON, plot."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from pathlib import Path
from typing import Any

import httpx

from server import __version__
from server.bench.aio import run_async
from server.bench.client import Target
from server.bench.corpus import build_corpus, load_file
from server.bench.plot import Panel, PlotUnavailable, plot_panels, require_matplotlib
from server.bench.processes import GeneratorFailed, run_levels
from server.bench.report import format_table, notes, write_json
from server.bench.routes import ROUTES, BuildOptions, build_payloads
from server.bench.runner import Load
from server.bench.stats import LevelSummary

DEFAULT_DURATION_S = 10.0
OPEN_LOOP_MAX_INFLIGHT = 512


class BenchError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (BenchError, PlotUnavailable, GeneratorFailed) as exc:
        print(f"convoy bench: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.plot:
        require_matplotlib()  # before minutes of load, not after
    if args.requests is None and args.duration is None:
        args.duration = DEFAULT_DURATION_S
    texts = _texts(args)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    meta = _meta(args, texts)
    if args.offline:
        if args.processes > 1:
            raise BenchError("--processes splits HTTP load; --offline measures the model in one process")
        return _offline(args, texts, meta, progress)
    loads = plan_loads(args)
    target = _target(args, texts, meta)
    levels = run_levels(
        target, loads, processes=args.processes, warmup_s=args.warmup, progress=progress, seed=args.seed
    )
    _report(args, meta, levels, title=f"{args.route} · {meta['inputs']}")
    return 0


def _texts(args: argparse.Namespace) -> list[str]:
    if args.file:
        try:
            return load_file(Path(args.file))
        except ValueError as exc:
            raise BenchError(str(exc)) from None
    return build_corpus(args.profile, args.corpus_size, args.seed)


def plan_loads(args: argparse.Namespace) -> list[Load]:
    """The levels to run, in order, from --concurrency / --sweep / --rate."""
    if args.sweep and args.concurrency:
        raise BenchError("give --concurrency or --sweep, not both")
    common = {"requests": args.requests, "duration_s": args.duration}
    if args.rate:
        if args.sweep:
            raise BenchError("--sweep sweeps concurrency; for an open-loop sweep give --rate R1,R2,...")
        cap = args.concurrency or OPEN_LOOP_MAX_INFLIGHT
        return [Load("open", rate, cap, **common) for rate in args.rate]
    levels = args.sweep or [args.concurrency or 1]
    return [Load("closed", c, c, **common) for c in levels]


def _target(args: argparse.Namespace, texts: list[str], meta: dict[str, Any]) -> Target:
    spec = ROUTES[args.route]
    if args.route == "/process" and not args.api_url:
        raise BenchError("/process needs at least one --api-url (an upstream the server may call)")
    api_key = args.api_key or os.environ.get("CONVOY_BENCH_API_KEY")
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    server = run_async(_preflight(args.url, args.timeout, headers))
    meta["server"] = server
    model_name = args.model_name
    if args.route == "/v1/embeddings" and not model_name:
        models = server.get("models") or [{}]
        model_name = models[0].get("name", "all-MiniLM-L6-v2")
    opts = BuildOptions(chunk_size=args.chunk_size, model_name=model_name, api_urls=tuple(args.api_url))
    return Target(args.url, spec, build_payloads(spec, texts, opts), timeout_s=args.timeout, headers=headers)


async def _preflight(url: str, timeout_s: float, headers: dict[str, str]) -> dict[str, Any]:
    """Fail in a second with a clear line when the server is not there or not ready."""
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, headers=headers, trust_env=False) as client:
        try:
            ready = await client.get("/ready")
        except httpx.HTTPError as exc:
            raise BenchError(f"cannot reach {url}: {type(exc).__name__}: {exc}") from None
        if ready.status_code == 503:
            raise BenchError(f"{url} is not ready yet (GET /ready answered 503)")
        try:
            models = await client.get("/models")
            info: dict[str, Any] = models.json() if models.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            info = {}
    return {"ready_status": ready.status_code, "models": info.get("models", [])}


def _offline(args: argparse.Namespace, texts: list[str], meta: dict[str, Any], progress: bool) -> int:
    from models.loader import ModelLoadError  # --offline may import torch
    from server.bench.offline import OfflineOptions, measure_offline

    opts = OfflineOptions(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        torch_threads=args.torch_threads,
        max_batch_size=args.max_batch_size,
        chunk_size=args.chunk_size,
        duration_s=args.duration,
        chunks=args.requests,
        sort_window=args.sort_window,
        warmup_s=args.warmup,
    )
    try:
        result = measure_offline(texts, opts, progress=progress)
    except ModelLoadError as exc:
        raise BenchError(str(exc)) from None
    meta["offline"] = result.meta
    pad = result.padding
    _report(
        args,
        meta,
        result.levels,
        title=f"raw model · {meta['inputs']}",
        padding=pad,
        series={
            "raw, arrival order": [s for s in result.levels if not s.label.endswith("sorted")],
            "raw, sorted by length": [s for s in result.levels if s.label.endswith("sorted")],
        },
        footer=[
            f"latency is per batch (tokenisation + forward); {result.meta['chunks']} chunks of "
            f"{result.meta['mean_tokens']:.0f} tokens on average",
            f"padding overhead at batch {pad['batch_size']}: {pad['arrival_order']:.1%} in arrival order, "
            f"{pad['sorted']:.1%} sorted in windows of {pad['sort_window']}",
        ],
    )
    return 0


def _report(
    args: argparse.Namespace,
    meta: dict[str, Any],
    levels: list[LevelSummary],
    *,
    title: str,
    series: dict[str, list[LevelSummary]] | None = None,
    footer: list[str] | None = None,
    **extra: Any,
) -> None:
    print(f"# {title}")
    print(format_table(levels))
    for line in [*(footer or []), *notes(levels)]:
        print(f"note: {line}")
    if args.json:
        write_json(Path(args.json), meta, levels, **extra)
        print(f"wrote {args.json}")
    if args.plot:
        plot_panels([Panel(title=title, series=series or {meta["series"]: levels})], Path(args.plot))
        print(f"wrote {args.plot}")


def _meta(args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    inputs = f"file {args.file}" if args.file else f"{args.profile} corpus"
    return {
        "tool": "convoy bench",
        "version": __version__,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "url": None if args.offline else args.url,
        "route": None if args.offline else args.route,
        "inputs": inputs,
        "texts": len(texts),
        "chunk_size": args.chunk_size,
        "warmup_s": args.warmup,
        "requests": args.requests,
        "duration_s": args.duration,
        "seed": args.seed,
        "processes": None if args.offline else args.processes,
        "series": "raw model" if args.offline else args.url,
        "host": platform.node(),
        "python": platform.python_version(),
        "cpu_affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
