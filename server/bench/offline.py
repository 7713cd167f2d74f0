"""`convoy bench --offline`: the limit the server is judged by, the raw model with no HTTP.

The same corpus is cut into the same chunks the server would make, then run through
`models.loader.load_model` and the model's own `prepare` (tokenisation) + `forward`, exactly the
calls the batcher makes, on one thread: at batch 1, at the server's max batch size in arrival
order, and at max batch size after sorting windows of chunks by length. It also reports the
padding overhead of both orders (padded tokens computed / real tokens - 1).

torch is imported only inside `measure_offline`, so the HTTP bench never pays for it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from server.bench.stats import LevelSummary, Outcome, Recorder, summarize


@dataclass(frozen=True, slots=True)
class OfflineOptions:
    model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    torch_threads: int | None = None
    max_batch_size: int = 32
    chunk_size: int = 1000
    duration_s: float | None = 10.0
    chunks: int | None = None
    sort_window: int = 128
    warmup_s: float = 1.0


@dataclass
class OfflineResult:
    levels: list[LevelSummary]
    meta: dict[str, Any] = field(default_factory=dict)
    padding: dict[str, Any] = field(default_factory=dict)


def sorted_windows(lengths: Sequence[int], window: int) -> list[int]:
    """Indices in arrival order, except that each run of `window` items is sorted by length.

    This is what a batcher can do when `window` chunks wait in its queue: group similar lengths.
    """
    order: list[int] = []
    for start in range(0, len(lengths), window):
        idx = range(start, min(start + window, len(lengths)))
        order.extend(sorted(idx, key=lambda i: lengths[i]))
    return order


def padding_overhead(lengths: Sequence[int], batch_size: int, order: Sequence[int] | None = None) -> float:
    """Padded tokens over real tokens, minus one, when `lengths` run in batches of `batch_size`.

    Each batch is padded to its longest member, so a batch of lengths (3, 5) computes 10 tokens
    for 8 real ones: overhead 0.25.
    """
    seq = [lengths[i] for i in order] if order is not None else list(lengths)
    real = sum(seq)
    if real == 0:
        return 0.0
    padded = sum(
        max(seq[i : i + batch_size]) * len(seq[i : i + batch_size]) for i in range(0, len(seq), batch_size)
    )
    return padded / real - 1.0


def _run_config(
    run_batch: Callable[[list[str]], int],
    chunks: Sequence[str],
    order: Sequence[int],
    batch_size: int,
    *,
    label: str,
    progress: bool,
    budget_s: float | None,
    budget_chunks: int | None,
) -> tuple[Recorder, float]:
    rec = Recorder()
    batches = [[chunks[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)]
    by_time = budget_chunks is None
    bar = tqdm(
        total=budget_s if by_time else budget_chunks,
        desc=label,
        unit="s" if by_time else "chunk",
        file=sys.stderr,
        disable=not progress,
        leave=progress,
        dynamic_ncols=True,
    )
    start = time.perf_counter()
    deadline = start + budget_s if budget_s else float("inf")
    done = 0
    try:
        while time.perf_counter() < deadline and (budget_chunks is None or rec.chunks < budget_chunks):
            batch = batches[done % len(batches)]
            t0 = time.perf_counter()
            tokens = run_batch(batch)
            now = time.perf_counter()
            rec.add(Outcome(chunks=len(batch), tokens=tokens), now - t0)
            done += 1
            bar.update(round(now - t0, 3) if by_time else len(batch))
    finally:
        bar.close()
    return rec, time.perf_counter() - start


def measure_offline(texts: Sequence[str], opts: OfflineOptions, *, progress: bool = False) -> OfflineResult:
    """Load the model as the server does and measure it on the chunks of `texts` (blocking)."""
    from models.loader import ModelSpec, load_model  # torch: only here
    from server.chunking import split_text

    model = load_model(
        ModelSpec(
            source=opts.model,
            device=opts.device,
            dtype=opts.dtype,
            torch_threads=opts.torch_threads,
            warmup_batch_size=opts.max_batch_size,
        )
    )
    try:
        info = model.info
        chunks = [
            c.text
            for t in texts
            for c in split_text(
                t, opts.chunk_size, max_tokens=info.max_tokens, count_tokens=model.count_tokens
            )
        ]
        probe = model.forward(model.prepare(chunks[:1]))
        specials = int(probe.tokens[0]) - model.count_tokens(chunks[:1])[0]
        lengths = [min(n + specials, info.max_tokens) for n in model.count_tokens(chunks)]

        def run_batch(batch: list[str]) -> int:
            return int(model.forward(model.prepare(batch)).tokens.sum())

        big = opts.max_batch_size
        arrival = list(range(len(chunks)))
        by_length = sorted_windows(lengths, opts.sort_window)
        configs = [(f"raw b={big}", big, arrival), (f"raw b={big} sorted", big, by_length)]
        if big > 1:
            configs.insert(0, ("raw b=1", 1, arrival))
        levels = []
        for label, size, order in configs:
            if opts.warmup_s > 0:
                _run_config(
                    run_batch,
                    chunks,
                    order,
                    size,
                    label="",
                    progress=False,
                    budget_s=opts.warmup_s,
                    budget_chunks=None,
                )
            rec, elapsed = _run_config(
                run_batch,
                chunks,
                order,
                size,
                label=label,
                progress=progress,
                budget_s=opts.duration_s,
                budget_chunks=opts.chunks,
            )
            summary = summarize(rec, label=label, mode="offline", level=size, elapsed_s=elapsed)
            # Report texts/s (what /predict's requests/s means), not batches/s.
            summary.requests_per_s = summary.chunks_per_s * len(texts) / len(chunks)
            summary.requests = rec.chunks
            summary.extra = {
                "batches": rec.ok,
                "latency_is_per_batch": True,
                "padding_overhead": padding_overhead(lengths, size, order),
            }
            levels.append(summary)
    finally:
        model.close()
    return OfflineResult(
        levels=levels,
        meta={
            "model": info.name,
            "device": info.device,
            "dtype": info.dtype,
            "max_tokens": info.max_tokens,
            "torch_threads": opts.torch_threads,
            "max_batch_size": big,
            "texts": len(texts),
            "chunks": len(chunks),
            "mean_tokens": sum(lengths) / len(lengths),
        },
        padding={
            "batch_size": big,
            "sort_window": opts.sort_window,
            "arrival_order": padding_overhead(lengths, big),
            "sorted": padding_overhead(lengths, big, by_length),
        },
    )
