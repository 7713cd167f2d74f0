"""The raw results of one level from each generator process -> one LevelSummary over all their samples.

Percentiles are computed over the concatenated latencies, never averaged across processes: the
mean of two p99s is not the p99 of the whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from server.bench.client import BatchTotals
from server.bench.stats import LevelSummary, Recorder, summarize


@dataclass(slots=True)
class ShareResult:
    """What one process measured of one level (pickled back to the parent under --processes).

    `started` and `finished` are `time.perf_counter()` readings: a system-wide monotonic clock
    (CLOCK_MONOTONIC on Linux), so readings from different processes compare.
    """

    recorder: Recorder
    started: float
    finished: float
    cpu_s: float
    batch_before: BatchTotals | None = None
    batch_after: BatchTotals | None = None

    @property
    def cpu_share(self) -> float:
        """Share of one core the process used while it measured (1.0 = a whole core)."""
        return self.cpu_s / max(self.finished - self.started, 1e-9)


def _mean_batch(shares: Sequence[ShareResult]) -> float | None:
    for s in shares:
        before, after = s.batch_before, s.batch_after
        if before and after and after[1] > before[1]:
            return (after[0] - before[0]) / (after[1] - before[1])
    return None


def merge_shares(
    shares: Sequence[ShareResult],
    *,
    label: str,
    mode: str,
    level: float,
    client_cores: int | None = None,
) -> LevelSummary:
    """One summary of the processes that ran this level (idle ones sent no share).

    Throughput is over the span from the first process's start to the last one's end; the
    generator's CPU is the busiest process's share of a core, with every process's share in
    `extra` so the report can judge saturation across all of them.
    """
    if not shares:
        raise ValueError("no process ran this level")
    summary = summarize(
        Recorder.merged(s.recorder for s in shares),
        label=label,
        mode=mode,
        level=level,
        elapsed_s=max(s.finished for s in shares) - min(s.started for s in shares),
        client_cpu=max(s.cpu_share for s in shares),
        server_mean_batch=_mean_batch(shares),
    )
    summary.extra = {
        "processes": len(shares),
        "client_cpu_by_process": [round(s.cpu_share, 4) for s in shares],
        "client_cores": client_cores,
    }
    return summary
