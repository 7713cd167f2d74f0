"""Per-request outcomes, their recorder, and the summary of one load level (percentiles, rates)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

PERCENTILES = (50.0, 90.0, 99.0)


def percentiles(values: Sequence[float], qs: Sequence[float] = PERCENTILES) -> list[float]:
    """The q-th percentiles (0..100) by linear interpolation between closest ranks.

    The same definition as numpy's default (`method="linear"`): for n sorted values the q-th
    percentile sits at rank (n - 1) * q / 100. NaN for an empty sample.
    """
    for q in qs:
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile {q} is outside 0..100")
    if not values:
        return [math.nan for _ in qs]
    xs = sorted(values)
    out = []
    for q in qs:
        rank = (len(xs) - 1) * q / 100.0
        lo = math.floor(rank)
        hi = min(lo + 1, len(xs) - 1)
        out.append(xs[lo] + (xs[hi] - xs[lo]) * (rank - lo))
    return out


def percentile(values: Sequence[float], q: float) -> float:
    return percentiles(values, (q,))[0]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request as the bench judged it: `error` is None for a correct answer, else its kind."""

    error: str | None = None
    chunks: int = 0
    tokens: int | None = None
    queue_ms: float | None = None
    inference_ms: float | None = None
    detail: str = ""


@dataclass(slots=True)
class Recorder:
    """Collects the outcomes of one level. Only correct answers count towards latency and rates."""

    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)
    chunks: int = 0
    tokens: int = 0
    tokens_known: bool = True
    queue_ms: list[float] = field(default_factory=list)
    inference_ms: list[float] = field(default_factory=list)

    def add(self, outcome: Outcome, latency_s: float) -> None:
        if outcome.error is not None:
            self.add_error(outcome.error, outcome.detail)
        else:
            self.add_ok(latency_s, outcome.chunks, outcome.tokens, outcome.queue_ms, outcome.inference_ms)

    def add_ok(
        self,
        latency_s: float,
        chunks: int,
        tokens: int | None,
        queue_ms: float | None = None,
        inference_ms: float | None = None,
    ) -> None:
        """A correct answer. The generator's hot path calls this directly: no `Outcome` per request."""
        self.latencies_s.append(latency_s)
        self.chunks += chunks
        if tokens is None:
            self.tokens_known = False
        else:
            self.tokens += tokens
        if queue_ms is not None:
            self.queue_ms.append(queue_ms)
        if inference_ms is not None:
            self.inference_ms.append(inference_ms)

    def add_error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] += 1
        self.error_examples.setdefault(kind, detail)

    @classmethod
    def merged(cls, recorders: Iterable[Recorder]) -> Recorder:
        """One recorder holding every raw sample of `recorders` (so percentiles span all of them)."""
        out = cls()
        for rec in recorders:
            out.latencies_s += rec.latencies_s
            out.errors.update(rec.errors)
            for kind, example in rec.error_examples.items():
                out.error_examples.setdefault(kind, example)
            out.chunks += rec.chunks
            out.tokens += rec.tokens
            out.tokens_known = out.tokens_known and rec.tokens_known
            out.queue_ms += rec.queue_ms
            out.inference_ms += rec.inference_ms
        return out

    @property
    def ok(self) -> int:
        return len(self.latencies_s)

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())

    @property
    def completed(self) -> int:
        return self.ok + self.error_total


@dataclass(slots=True)
class LevelSummary:
    """One load level (or one offline batch size) as reported in the table, JSON and plot.

    `mode` is closed (level = concurrency), open (level = offered requests/s) or offline
    (level = batch size). Latencies are in milliseconds; rates count correct answers only.
    """

    label: str
    mode: str
    level: float
    requests: int
    errors: dict[str, int]
    elapsed_s: float
    requests_per_s: float
    chunks_per_s: float
    tokens_per_s: float | None
    latency_ms: dict[str, float]
    server_queue_ms_p50: float | None = None
    server_inference_ms_p50: float | None = None
    server_mean_batch: float | None = None
    client_cpu: float | None = None
    error_examples: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LevelSummary:
        return cls(**data)


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean in milliseconds."""
    ms = [x * 1000.0 for x in latencies_s]
    p50, p90, p99 = percentiles(ms)
    return {
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "max": max(ms) if ms else math.nan,
        "mean": sum(ms) / len(ms) if ms else math.nan,
    }


def summarize(
    recorder: Recorder,
    *,
    label: str,
    mode: str,
    level: float,
    elapsed_s: float,
    client_cpu: float | None = None,
    server_mean_batch: float | None = None,
) -> LevelSummary:
    elapsed = max(elapsed_s, 1e-9)
    return LevelSummary(
        label=label,
        mode=mode,
        level=level,
        requests=recorder.ok,
        errors=dict(sorted(recorder.errors.items())),
        elapsed_s=elapsed_s,
        requests_per_s=recorder.ok / elapsed,
        chunks_per_s=recorder.chunks / elapsed,
        tokens_per_s=recorder.tokens / elapsed if recorder.tokens_known and recorder.ok else None,
        latency_ms=latency_summary(recorder.latencies_s),
        server_queue_ms_p50=percentile(recorder.queue_ms, 50) if recorder.queue_ms else None,
        server_inference_ms_p50=percentile(recorder.inference_ms, 50) if recorder.inference_ms else None,
        server_mean_batch=server_mean_batch,
        client_cpu=client_cpu,
        error_examples=dict(sorted(recorder.error_examples.items())),
    )


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)
